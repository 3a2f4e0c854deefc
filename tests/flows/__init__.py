"""The samples' GPU flow tests. They keep this folder (not tests/samples/) because the committed
baselines in results/ name them by these test ids; moving them waits for the next GPU baseline."""
