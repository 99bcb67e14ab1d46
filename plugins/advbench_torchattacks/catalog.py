"""Which torchattacks attacks fit advbench's protocol, and why the others do not.

advbench measures attacks under an L∞ budget on a prototype classifier (see ``wrapper``). An
attack is supported when it takes an L∞ ``eps`` (or ``max_epsilon``) and needs only images,
labels and logits.
"""

from __future__ import annotations

# class name -> the name of its L∞ budget argument
SUPPORTED: dict[str, str] = {
    name: "eps"
    for name in (
        "FGSM",
        "BIM",
        "RFGSM",
        "PGD",
        "EOTPGD",
        "FFGSM",
        "TPGD",
        "MIFGSM",
        "UPGD",
        "APGD",
        "APGDT",
        "DIFGSM",
        "TIFGSM",
        "Jitter",
        "NIFGSM",
        "PGDRS",
        "SINIFGSM",
        "VMIFGSM",
        "VNIFGSM",
        "SPSA",
        "FAB",
        "Square",
        "AutoAttack",
    )
} | {"PIFGSM": "max_epsilon", "PIFGSMPP": "max_epsilon"}

UNSUPPORTED: dict[str, str] = {
    "VANILA": "no perturbation (identity)",
    "GN": "Gaussian noise has no L∞ budget",
    "CW": "L2 attack with no budget (minimises the norm)",
    "PGDL2": "L2 budget; advbench's protocol is L∞",
    "PGDRSL2": "L2 budget; advbench's protocol is L∞",
    "DeepFool": "minimal-norm L2 attack, no budget",
    "EADL1": "elastic-net (L1) attack, no budget",
    "EADEN": "elastic-net (L1+L2) attack, no budget",
    "SparseFool": "minimal L0 attack, no budget",
    "JSMA": "L0 saliency attack, no L∞ budget",
    "OnePixel": "L0 attack, no L∞ budget",
    "Pixle": "L0 attack; crashes on non-square images such as re-ID crops",
    "MultiAttack": "a wrapper; run attacks one by one instead",
    "LGV": "needs a training loader and retrains the model",
}

# Classes whose step size is a fraction of the budget: alpha = factor * eps / steps (PGD's rule).
ALPHA_PER_STEP = 2.5
