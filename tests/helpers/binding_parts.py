"""Two compiled collaborators with the same signature, for tests/test_kernel_binding.py."""
import numba


@numba.njit(cache=True)
def plus_one(x):
    return x + 1


@numba.njit(cache=True)
def times_ten(x):
    return x * 10
