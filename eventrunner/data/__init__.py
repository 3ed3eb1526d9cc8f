"""Data side of the loop: loader kinds and wrappers, the tensor walker, batch prefetching."""
