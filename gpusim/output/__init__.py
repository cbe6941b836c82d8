"""HDF5 result files: writing a run or a batch, and reading them back."""
