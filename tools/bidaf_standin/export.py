"""Write the trained stand-in as an ONNX graph with bidaf-9.onnx's interface and patterns.

The graph is built node by node with onnx.helper from the trained weights (numpy), so
every name is chosen here:

* inputs ``context_word`` [c,1], ``context_char`` [c,1,1,16], ``query_word`` [q,1],
  ``query_char`` [q,1,1,16], all strings, each read by exactly one ai.onnx.ml
  ``CategoryMapper`` (CategoryMapper_4 .. _7, the original's node names) whose int64
  output feeds a Gather (embedding lookup);
* one ``Hardmax -> Cast(bool) -> Reshape([-1]) -> Compress(axis=1)`` chain: Hardmax over
  the start logits [1, c] (axis 1), its one-hot row as a [c] condition, Compress picking
  the modeling vector at the start position out of M [1, c, 2H] (result [1, 1, 2H]);
  the end pointer reads it. ArgMax(axis=1, keepdims=0) -> Gather(axis=1) computes the same;
* outputs ``start_pos`` / ``end_pos``: int32 [1] (ArgMax over the [1, c] logits, Cast);
* ``W_0`` [D, D] (MatMul) and ``Parameter576_B_0`` [D] (Add), the two weights NVIDIA's
  sample refits: the transform weight and bias of the context's last highway layer. Each
  is read by exactly one node (context and query have separate highways), and with
  np.ones_like fakes every context word gets the same transform output, which wrecks
  the answers (the generator checks that the sample pair then no longer answers "brown").

Only TensorRT-8.5-parsable operators besides CategoryMapper / Hardmax / Cast(bool) /
Compress (which the BiDAF preparation removes): Gather, Reshape, Transpose, Conv, Relu,
ReduceMax, Concat, MatMul, Add, Sub, Mul, Sigmoid, LSTM (bidirectional), Softmax (2-D),
ArgMax (2-D), Cast. Every Softmax / ArgMax / Hardmax works on a 2-D tensor.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from refit_core.samples.bidaf import BIDAF_CHARS_PER_WORD as CHARS_PER_WORD
from refit_core.samples.bidaf import BIDAF_INPUTS, BIDAF_OUTPUTS, BIDAF_SAMPLE_WEIGHTS
from .vocab import CHAR_UNK_ID, WORD_UNK_ID, Vocab

OPSET = 13
ML_OPSET = 1
IR_VERSION = 7           # what opset 13 shipped with; TensorRT 8.5's parser reads it
REFIT_BIAS_NAME, REFIT_WEIGHT_NAME = BIDAF_SAMPLE_WEIGHTS  # "Parameter576_B_0", "W_0"
INPUT_NAMES = BIDAF_INPUTS
OUTPUT_NAMES = BIDAF_OUTPUTS
CATEGORY_MAPPER_NAMES = {"context_word": "CategoryMapper_4", "context_char": "CategoryMapper_5",
                         "query_word": "CategoryMapper_6", "query_char": "CategoryMapper_7"}
PRODUCER = "refit_core.samples.bidaf (BiDAF stand-in)"


def _lstm_onnx(state: Dict[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """torch nn.LSTM (gates i,f,g,o; two biases) -> ONNX W, R, B (gates i,o,f,c)."""
    def reorder(w: np.ndarray) -> np.ndarray:
        i, f, g, o = np.split(w, 4, axis=0)
        return np.concatenate([i, o, f, g], axis=0)

    ws, rs, bs = [], [], []
    for suffix in ("l0", "l0_reverse"):
        ws.append(reorder(state[f"{prefix}.weight_ih_{suffix}"]))
        rs.append(reorder(state[f"{prefix}.weight_hh_{suffix}"]))
        bs.append(np.concatenate([reorder(state[f"{prefix}.bias_ih_{suffix}"]),
                                  reorder(state[f"{prefix}.bias_hh_{suffix}"])]))
    return {"W": np.stack(ws), "R": np.stack(rs), "B": np.stack(bs)}


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.value_info: List[onnx.ValueInfoProto] = []
        self._names = set()

    def init(self, name: str, value: np.ndarray) -> str:
        if name in self._names:
            raise ValueError(f"duplicate initializer {name}")
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const_shape(self, name: str, dims: Sequence[int]) -> str:
        if name not in self._names:
            self.init(name, np.asarray(dims, dtype=np.int64))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, output: Optional[str] = None,
             domain: Optional[str] = None, shape: Optional[Sequence] = None,
             elem_type: int = TensorProto.FLOAT, **attrs) -> str:
        """Add a node; ``shape`` (symbolic 'c' / 'q' allowed) records the output's value_info
        where ONNX shape inference would lose the symbolic dimension (after a Reshape)."""
        outputs = [output or name]
        if shape is not None:
            self.value_info.append(helper.make_tensor_value_info(outputs[0], elem_type, list(shape)))
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name,
                                           domain=domain, **attrs))
        return outputs[0]


def build_onnx(state: Dict[str, np.ndarray], vocab: Vocab, hparams: Dict[str, object],
               doc: str = "") -> onnx.ModelProto:
    """The ONNX model of a trained BidafStandin (``state``: its state_dict as float32 numpy)."""
    hidden = int(hparams["hidden"])
    d2 = 2 * hidden
    char_dim = int(hparams["char_dim"])
    word_dim = int(hparams["word_dim"])
    embed_dim = int(hparams["word_dim"]) + int(hparams["char_filters"])
    dh = embed_dim + d2      # H and U: [highway output; contextual BiLSTM]
    n_highway = int(hparams["highway_layers"])
    st = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}

    b = _GraphBuilder()
    # ---- weights, named after what they are
    b.init("word_emb", st["word_emb.weight"])
    b.init("char_emb", st["char_emb.weight"])
    b.init("char_conv_W", st["char_conv.weight"][:, :, None, :])      # [F, E, 1, k]
    b.init("char_conv_B", st["char_conv.bias"])
    highway_names = {}
    for side, torch_prefix in (("context", "ctx_highway"), ("query", "qry_highway")):
        for i in range(n_highway):
            names = {"W": f"{side}_highway{i}_W", "B": f"{side}_highway{i}_B",
                     "gate_W": f"{side}_highway{i}_gate_W", "gate_B": f"{side}_highway{i}_gate_B"}
            if side == "context" and i == n_highway - 1:   # the weights the refit sample swaps
                names["W"], names["B"] = REFIT_WEIGHT_NAME, REFIT_BIAS_NAME
            highway_names[side, i] = names
            b.init(names["W"], st[f"{torch_prefix}.{i}.transform.weight"].T)       # [D, D]
            b.init(names["B"], st[f"{torch_prefix}.{i}.transform.bias"])           # [D]
            b.init(names["gate_W"], st[f"{torch_prefix}.{i}.gate.weight"].T)
            b.init(names["gate_B"], st[f"{torch_prefix}.{i}.gate.bias"])
    for lstm in ("ctx_lstm", "mod_lstm", "end_lstm"):
        for key, value in _lstm_onnx(st, lstm).items():
            b.init(f"{lstm}_{key}", value)
    b.init("att_w_h", st["att_w_h"][:, None])
    b.init("att_w_u", st["att_w_u"][:, None])
    b.init("att_w_hu", st["att_w_hu"])
    b.init("start_W", st["start_proj.weight"].T)                       # [4(E + 2H) + 2H, 1]
    b.init("start_B", st["start_proj.bias"])                           # [1]
    b.init("end_W", st["end_proj.weight"].T)
    b.init("end_B", st["end_proj.bias"])

    # ---- string -> id maps (the nodes the preparation drops)
    word_map = vocab.word_map()
    char_map = vocab.char_map()
    ids = {}
    for inp in INPUT_NAMES:
        mapping = word_map if inp.endswith("_word") else char_map
        default = WORD_UNK_ID if inp.endswith("_word") else CHAR_UNK_ID
        name = CATEGORY_MAPPER_NAMES[inp]
        ids[inp] = b.node("CategoryMapper", [inp], name, output=f"{inp}_ids", domain="ai.onnx.ml",
                          cats_strings=list(mapping.keys()),
                          cats_int64s=[int(v) for v in mapping.values()],
                          default_int64=default, default_string="<unk>")

    def embed(side: str) -> str:
        n = side[0]   # the symbolic length: "c" or "q"
        # the CategoryMapper ids are the Gathers' indices directly, as in bidaf-9.onnx
        wv = b.node("Gather", ["word_emb", ids[f"{side}_word"]], f"{side}_word_vectors",
                    axis=0)                                                        # [n, 1, Dw]
        wv = b.node("Reshape", [wv, b.const_shape("shape_word_rows", [-1, word_dim])],
                    f"{side}_word_rows", shape=[n, word_dim])                                           # [n, Dw]
        cv = b.node("Gather", ["char_emb", ids[f"{side}_char"]], f"{side}_char_vectors",
                    axis=0)                                                        # [n, 1, 1, 16, E]
        cv = b.node("Reshape", [cv, b.const_shape("shape_char_rows",
                                                  [-1, CHARS_PER_WORD, char_dim])],
                    f"{side}_char_rows", shape=[n, CHARS_PER_WORD, char_dim])                                           # [n, 16, E]
        cv = b.node("Transpose", [cv], f"{side}_char_rows_t", perm=[0, 2, 1])      # [n, E, 16]
        cv = b.node("Reshape", [cv, b.const_shape("shape_char_conv_in",
                                                  [-1, char_dim, 1, CHARS_PER_WORD])],
                    f"{side}_char_conv_in", shape=[n, char_dim, 1, CHARS_PER_WORD])                                        # [n, E, 1, 16]
        conv = b.node("Conv", [cv, "char_conv_W", "char_conv_B"], f"{side}_char_conv",
                      kernel_shape=[1, int(hparams["char_kernel"])])
        conv = b.node("Relu", [conv], f"{side}_char_conv_relu")
        cf = b.node("ReduceMax", [conv], f"{side}_char_features", axes=[2, 3], keepdims=0)
        x = b.node("Concat", [wv, cf], f"{side}_embedding", axis=1)                # [n, Dw + F]
        for i in range(n_highway):
            p = f"{side}_highway{i}"
            names = highway_names[side, i]
            h = b.node("MatMul", [x, names["W"]], f"{p}_mm")
            h = b.node("Add", [h, names["B"]], f"{p}_add")
            h = b.node("Relu", [h], f"{p}_relu")
            g = b.node("MatMul", [x, names["gate_W"]], f"{p}_gate_mm")
            g = b.node("Add", [g, names["gate_B"]], f"{p}_gate_add")
            g = b.node("Sigmoid", [g], f"{p}_gate")
            d = b.node("Sub", [h, x], f"{p}_diff")
            d = b.node("Mul", [g, d], f"{p}_gated")
            x = b.node("Add", [x, d], f"{p}_out")
        ctx = bilstm(x, "ctx_lstm", f"{side}_contextual", embed_dim, n)
        return b.node("Concat", [x, ctx], f"{side}_encoding", axis=1)                 # [n, E + 2H]

    def bilstm(x: str, weights: str, name: str, in_dim: int, n: str) -> str:
        seq = b.node("Reshape", [x, b.const_shape(f"shape_{weights}_in", [-1, 1, in_dim])],
                     f"{name}_seq", shape=[n, 1, in_dim])                          # [n, 1, in]
        y = b.node("LSTM", [seq, f"{weights}_W", f"{weights}_R", f"{weights}_B"],
                   f"{name}_lstm", direction="bidirectional", hidden_size=hidden)  # [n, 2, 1, H]
        y = b.node("Transpose", [y], f"{name}_lstm_t", perm=[0, 2, 1, 3])          # [n, 1, 2, H]
        return b.node("Reshape", [y, b.const_shape("shape_rows_2h", [-1, d2])], name,
                      shape=[n, d2])                                               # [n, 2H]

    h = embed("context")                                                           # [c, E + 2H]
    u = embed("query")                                                             # [q, E + 2H]

    # ---- attention flow
    s_h = b.node("MatMul", [h, "att_w_h"], "similarity_context_term")             # [c, 1]
    s_u = b.node("MatMul", [u, "att_w_u"], "similarity_query_column")              # [q, 1]
    s_u = b.node("Transpose", [s_u], "similarity_query_term", perm=[1, 0])         # [1, q]
    hw = b.node("Mul", [h, "att_w_hu"], "similarity_weighted_context")             # [c, E + 2H]
    ut = b.node("Transpose", [u], "query_transposed", perm=[1, 0])                 # [2H, q]
    s_hu = b.node("MatMul", [hw, ut], "similarity_product_term")                   # [c, q]
    s = b.node("Add", [s_h, s_u], "similarity_partial")
    s = b.node("Add", [s, s_hu], "similarity")                                     # [c, q]
    a = b.node("Softmax", [s], "c2q_weights", axis=1)
    u_tilde = b.node("MatMul", [a, u], "c2q_attention")                            # [c, E + 2H]
    m = b.node("ReduceMax", [s], "q2c_max", axes=[1], keepdims=1)                  # [c, 1]
    m = b.node("Transpose", [m], "q2c_max_row", perm=[1, 0])                       # [1, c]
    bw = b.node("Softmax", [m], "q2c_weights", axis=1)
    h_tilde = b.node("MatMul", [bw, h], "q2c_attention")                           # [1, 2H]
    hu = b.node("Mul", [h, u_tilde], "context_times_c2q")
    hh = b.node("Mul", [h, h_tilde], "context_times_q2c")
    g = b.node("Concat", [h, u_tilde, hu, hh], "attention_flow", axis=1)           # [c, 4(E + 2H)]

    # ---- modeling layer and start pointer
    mm = bilstm(g, "mod_lstm", "modeling", 4 * dh, "c")                                 # [c, 2H]
    gm = b.node("Concat", [g, mm], "start_features", axis=1)                       # [c, 4(E + 2H) + 2H]
    sl = b.node("MatMul", [gm, "start_W"], "start_pointer_mm")                     # [c, 1]
    sl = b.node("Add", [sl, "start_B"], "start_pointer_add")
    start_logits = b.node("Transpose", [sl], "start_logits", perm=[1, 0])          # [1, c]

    # ---- the start vector: Hardmax -> Cast -> Reshape -> Compress (as in bidaf-9.onnx)
    hard = b.node("Hardmax", [start_logits], "Hardmax_start", axis=1)              # [1, c] one-hot
    cond = b.node("Cast", [hard], "Cast_start_mask", to=TensorProto.BOOL)
    cond = b.node("Reshape", [cond, b.const_shape("shape_start_mask", [-1])],
                  "Reshape_start_mask", shape=["c"], elem_type=TensorProto.BOOL)                                            # [c]
    m3 = b.node("Reshape", [mm, b.const_shape("shape_batch_rows_2h", [1, -1, d2])],
                "modeling_batched", shape=[1, "c", d2])                                                # [1, c, 2H]
    sv = b.node("Compress", [m3, cond], "Compress_start_vector", axis=1,
                shape=[1, 1, d2])                                                  # one-hot: [1, 1, 2H]
    sv = b.node("Reshape", [sv, "shape_rows_2h"], "start_vector", shape=[1, d2])                  # [1, 2H]

    # ---- end pointer, conditioned on the start vector
    ms = b.node("Mul", [mm, sv], "modeling_times_start")                           # [c, 2H]
    ein = b.node("Concat", [g, mm, ms], "end_lstm_input", axis=1)                  # [c, 4(E + 2H) + 4H]
    m2 = bilstm(ein, "end_lstm", "end_modeling", 4 * dh + 2 * d2, "c")                           # [c, 2H]
    gm2 = b.node("Concat", [g, m2], "end_features", axis=1)
    el = b.node("MatMul", [gm2, "end_W"], "end_pointer_mm")
    el = b.node("Add", [el, "end_B"], "end_pointer_add")
    end_logits = b.node("Transpose", [el], "end_logits", perm=[1, 0])              # [1, c]

    for logits, out in ((start_logits, "start_pos"), (end_logits, "end_pos")):
        am = b.node("ArgMax", [logits], f"{out}_argmax", axis=1, keepdims=0)       # [1] int64
        b.nodes.append(helper.make_node("Cast", [am], [out], name=f"{out}_cast",
                                        to=TensorProto.INT32))

    inputs = [
        helper.make_tensor_value_info("context_word", TensorProto.STRING, ["c", 1]),
        helper.make_tensor_value_info("context_char", TensorProto.STRING, ["c", 1, 1, CHARS_PER_WORD]),
        helper.make_tensor_value_info("query_word", TensorProto.STRING, ["q", 1]),
        helper.make_tensor_value_info("query_char", TensorProto.STRING, ["q", 1, 1, CHARS_PER_WORD]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT32, [1]) for n in OUTPUT_NAMES]
    # The ids the CategoryMapper nodes produce: typed, so that once the preparation makes
    # them the graph inputs they carry dtype and shape (as in bidaf-9.onnx).
    value_info = [
        helper.make_tensor_value_info(f"{inp.name}_ids", TensorProto.INT64,
                                      [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim])
        for inp in inputs] + b.value_info
    graph = helper.make_graph(b.nodes, "bidaf_standin", inputs, outputs, b.initializers,
                              value_info=value_info)
    model = helper.make_model(
        graph, producer_name=PRODUCER, producer_version="1",
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        doc_string=doc)
    model.ir_version = IR_VERSION
    # Types and shapes of every intermediate tensor (value_info), like the original file.
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(model: onnx.ModelProto, path) -> None:
    onnx.save(model, str(path))
