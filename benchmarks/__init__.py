"""Benchmarks of scratchvae's training throughput, alone and against PyTorch and JAX peers."""
