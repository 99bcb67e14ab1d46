"""advbench-example: a third-party advbench plugin package showing every plugin kind.

* attacks (:mod:`advbench_example.attacks`): ``random-sign``, a noise baseline, and ``uap``, a
  universal perturbation learnt in ``fit`` and cached;
* a victim (:mod:`advbench_example.victim`): ``tiny-cnn``, a user's own small CNN made trainable;
* a dataset (:mod:`advbench_example.dataset`): ``toy-reid``, read from a folder layout of its own
  (write one with ``python -m advbench_example.make_toy ROOT``).

The hooks live in :mod:`advbench_example.plugin`, the module the entry point names.
"""

__version__ = "0.1.0"
