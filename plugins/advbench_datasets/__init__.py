"""Built-in datasets: the embedded procedural ``synthetic`` set and the four real re-ID releases.

Shaped exactly like a third-party plugin package: registered through the ``advbench`` entry-point
group, answering :func:`advbench.hookspecs.advbench_datasets`.
"""

from advbench import hookimpl

__version__ = "0.1.0"


@hookimpl
def advbench_datasets():
    from advbench_datasets import cuhk03, dukemtmcreid, market1501, msmt17, synthetic

    return [synthetic.SPEC, market1501.SPEC, dukemtmcreid.SPEC, cuhk03.SPEC, msmt17.SPEC]
