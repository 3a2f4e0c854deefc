"""NVIDIA's two refit samples, one package each: mnist (engine_refit_mnist) and bidaf
(engine_refit_onnx_bidaf)."""
