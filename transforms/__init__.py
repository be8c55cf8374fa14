"""PTransforms and DoFns of the krux-export pipeline; `WriteToKrux` is the one for your own pipelines."""

from transforms.write import WriteToKrux

__all__ = ["WriteToKrux"]
