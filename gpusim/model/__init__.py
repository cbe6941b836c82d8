"""The model of docs/model.md as pure array-API functions: random draws, market factors, borrowers,
debt and credit. Every backend computes these equations; the CUDA kernels mirror them one
device function per Python function."""
