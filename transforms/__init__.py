"""PTransforms and DoFns of the krux-export pipeline."""
