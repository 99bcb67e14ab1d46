"""Built-in defences: input transforms (JPEG, bit depth, median filter, random resize-and-pad) and
k-reciprocal re-ranking.

Shaped exactly like a third-party plugin package: registered through the ``advbench`` entry-point
group, answering :func:`advbench.hookspecs.advbench_defences`. ``none`` (no defence) is a
selector of the registry, not a plugin.
"""

from advbench import hookimpl

__version__ = "0.1.0"


@hookimpl
def advbench_defences():
    from advbench_defences import jpeg, randomization, rerank, squeeze

    return [jpeg.SPEC, squeeze.BITDEPTH_SPEC, squeeze.MEDIAN_SPEC, randomization.SPEC, rerank.SPEC]
