"""A small Bi-Directional Attention Flow network (Seo et al., 2017) in PyTorch.

Layers, as in the paper and as export.py writes them to ONNX:

1. character embedding: char embedding -> Conv over the 16 characters -> ReLU -> max over time;
2. word embedding (learned from scratch), concatenated with (1);
3. highway network (``highway_layers`` layers; one for the context, one for the query);
4. contextual embedding: one bidirectional LSTM shared by context and query; H and U are
   the highway output concatenated with it;
5. attention flow: similarity S_ij = w_h.h_i + w_u.u_j + w_hu.(h_i*u_j); context-to-query
   attention (softmax over j) and query-to-context attention (softmax over i of max_j S);
   G = [h; u~; h*u~; h*h~];
6. modeling layer: a bidirectional LSTM over G (M);
7. start pointer: [G; M] . w_start + b_start;
8. the start vector: M at the start position (argmax at inference: in ONNX
   Hardmax -> Cast -> Reshape -> Compress); the end pointer reads [G; M; M*start_vector]
   through a bidirectional LSTM (M2) and projects [G; M2].

Batches are padded; masks keep padding out of softmaxes and pointers, and the LSTMs run on
packed sequences, so a padded example scores exactly as it does alone (the ONNX file runs
one unpadded example).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

NEG_INF = -1e30


@dataclass(frozen=True)
class BidafConfig:
    word_dim: int = 32
    char_dim: int = 8
    char_filters: int = 16
    char_kernel: int = 3
    highway_layers: int = 2
    hidden: int = 24          # per direction; BiLSTM outputs are 2 * hidden wide
    dropout: float = 0.0      # 0: no dropout (the data set is clean; dropout costs CPU time)

    @property
    def embed_dim(self) -> int:
        return self.word_dim + self.char_filters

    @property
    def context_dim(self) -> int:
        """Width of H and U: the highway output next to the contextual BiLSTM's (the
        embedding itself lets the attention match a question word with the same word in
        the context, which finds the question's entity among same-kind distractors)."""
        return self.embed_dim + 2 * self.hidden

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


class Highway(nn.Module):
    """y = g * relu(W x + b) + (1 - g) * x, g = sigmoid(W_g x + b_g)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.transform(x))
        g = torch.sigmoid(self.gate(x))
        return x + g * (h - x)


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class BidafStandin(nn.Module):
    def __init__(self, n_words: int, n_chars: int, config: BidafConfig = BidafConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        d2 = 2 * c.hidden
        self.word_emb = nn.Embedding(n_words, c.word_dim)
        self.char_emb = nn.Embedding(n_chars, c.char_dim)
        self.char_conv = nn.Conv1d(c.char_dim, c.char_filters, c.char_kernel)
        # Separate highway networks for context and query; the context's last transform
        # is W_0 / Parameter576_B_0 in ONNX (each is read by exactly one node there).
        self.ctx_highway = nn.ModuleList([Highway(c.embed_dim) for _ in range(c.highway_layers)])
        self.qry_highway = nn.ModuleList([Highway(c.embed_dim) for _ in range(c.highway_layers)])
        self.ctx_lstm = nn.LSTM(c.embed_dim, c.hidden, batch_first=True, bidirectional=True)
        dh = c.context_dim
        self.att_w_h = nn.Parameter(torch.empty(dh))
        self.att_w_u = nn.Parameter(torch.empty(dh))
        self.att_w_hu = nn.Parameter(torch.empty(dh))
        for p in (self.att_w_h, self.att_w_u, self.att_w_hu):
            nn.init.uniform_(p, -1.0 / dh ** 0.5, 1.0 / dh ** 0.5)
        self.mod_lstm = nn.LSTM(4 * dh, c.hidden, batch_first=True, bidirectional=True)
        self.start_proj = nn.Linear(4 * dh + d2, 1)
        self.end_lstm = nn.LSTM(4 * dh + 2 * d2, c.hidden, batch_first=True, bidirectional=True)
        self.end_proj = nn.Linear(4 * dh + d2, 1)
        self.drop = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()

    # ------------------------------------------------------------------ layers
    def embed(self, words: torch.Tensor, chars: torch.Tensor, highway: nn.ModuleList) -> torch.Tensor:
        """words [B, L], chars [B, L, 16] -> [B, L, embed_dim] (after the highway)."""
        b, length, n = chars.shape
        ce = self.char_emb(chars.reshape(b * length, n)).transpose(1, 2)   # [BL, E, 16]
        cf = F.relu(self.char_conv(ce)).max(dim=2).values                # [BL, F]
        x = torch.cat([self.word_emb(words), cf.reshape(b, length, -1)], dim=2)
        x = self.drop(x)
        for layer in highway:
            x = layer(x)
        return x

    def attention(self, h: torch.Tensor, u: torch.Tensor, c_mask: torch.Tensor,
                  q_mask: torch.Tensor) -> torch.Tensor:
        s = ((h @ self.att_w_h).unsqueeze(2) + (u @ self.att_w_u).unsqueeze(1)
             + torch.bmm(h * self.att_w_hu, u.transpose(1, 2)))               # [B, Lc, Lq]
        s = s.masked_fill(~q_mask.unsqueeze(1), NEG_INF)
        a = torch.softmax(s, dim=2)
        u_tilde = torch.bmm(a, u)                                             # [B, Lc, context_dim]
        m = s.max(dim=2).values.masked_fill(~c_mask, NEG_INF)                 # [B, Lc]
        b = torch.softmax(m, dim=1)
        h_tilde = torch.bmm(b.unsqueeze(1), h)                                # [B, 1, context_dim]
        return torch.cat([h, u_tilde, h * u_tilde, h * h_tilde], dim=2)       # [B, Lc, 4 * context_dim]

    def forward(self, cw: torch.Tensor, cc: torch.Tensor, qw: torch.Tensor, qc: torch.Tensor,
                c_len: torch.Tensor, q_len: torch.Tensor,
                start_index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits [B, Lc]; padding positions get NEG_INF.

        ``start_index`` (teacher forcing in training) picks the start vector; without it
        the argmax of the start logits does, as in the ONNX graph.
        """
        lc = cw.shape[1]
        c_mask = torch.arange(lc).unsqueeze(0) < c_len.unsqueeze(1)
        q_mask = torch.arange(qw.shape[1]).unsqueeze(0) < q_len.unsqueeze(1)
        xc = self.embed(cw, cc, self.ctx_highway)
        xq = self.embed(qw, qc, self.qry_highway)
        h = torch.cat([xc, _run_lstm(self.ctx_lstm, xc, c_len)], dim=2)
        u = torch.cat([xq, _run_lstm(self.ctx_lstm, xq, q_len)], dim=2)
        g = self.attention(h, u, c_mask, q_mask)
        m = _run_lstm(self.mod_lstm, self.drop(g), c_len)
        start = self.start_proj(self.drop(torch.cat([g, m], dim=2))).squeeze(2)
        start = start.masked_fill(~c_mask, NEG_INF)
        if start_index is None:
            start_index = start.argmax(dim=1)
        s_vec = m[torch.arange(m.shape[0]), start_index]                      # [B, 2H]
        end_in = torch.cat([g, m, m * s_vec.unsqueeze(1)], dim=2)
        m2 = _run_lstm(self.end_lstm, self.drop(end_in), c_len)
        end = self.end_proj(self.drop(torch.cat([g, m2], dim=2))).squeeze(2)
        end = end.masked_fill(~c_mask, NEG_INF)
        return start, end
