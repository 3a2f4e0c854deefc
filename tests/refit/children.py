"""Code the GPU tests run in a child Python (a TensorRT that aborts must not end the session):
LeNet's REFIT engine, one plan for every child, read from the plan cache where an earlier child
or run built it (no Builder in the child then)."""
import textwrap

#: defines s (CudaSession), logger, rng, w (the seeded weights) and h (the engine handle)
LENET_FROM_PLAN_CACHE = textwrap.dedent("""
    import numpy as np
    from refit_core.config import plan_cache_dir
    from refit_core.samples.mnist import flow
    from refit_core.trt.cuda import CudaSession
    from refit_core.trt.engine import BuildOptions
    from refit_core.trt.plan_cache import PlanCache
    from refit_core.trt.recorders import make_logger
    s = CudaSession()
    logger = make_logger()
    rng = np.random.default_rng(0)
    w = {k: (0.1 * rng.standard_normal(v)).astype(np.float32) for k, v in flow.LENET_SHAPES.items()}
    h, _ = flow.build_lenet_engine(w, BuildOptions(), logger, PlanCache(plan_cache_dir()), s.gpu_name,
                                   progress=lambda line: None)
""")
