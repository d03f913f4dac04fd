"""The GPU benchmark suite's pieces (run by ``bench/gpu_suite.py``): :mod:`~gpu_bench.harness`, the
:mod:`~gpu_bench.baselines`, and one module per measurement group."""
