"""The BiDAF stand-in's generator (generate), its PyTorch model and training (model, train),
the node-by-node ONNX export (export, vocab), and the evaluation table with its baselines
(splits, baselines). The committed file and its metadata are refit_core/assets/bidaf_standin.*."""
