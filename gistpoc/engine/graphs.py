"""CUDA-graph capture of the engine's passes: one captured graph per (batch, tokens, span) with its static input
buffers, replayed instead of launching every kernel of a pass (``CapturedPasses``, a part of ``AnswerEngine``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gistpoc import kernels


@dataclass
class _Static:
    """Input buffers of one captured shape (batch, tokens) and, on CUDA, its graph."""
    ids: torch.Tensor     # (B, T) long
    pos: torch.Tensor     # (B, T) long
    slots: torch.Tensor   # (T,) long
    last: torch.Tensor    # (B,) long: index of each row's last real token in this pass
    logits: torch.Tensor | None = None  # (B, V) float32, written by the graph
    graph: "torch.cuda.CUDAGraph | None" = None



class CapturedPasses:
    """The engine's pass dispatch: ``_run`` replays a captured graph for a shape it has seen (capturing it the first
    time), or runs ``_pass`` directly (CPU, or a pass longer than ``graph_max_tokens``)."""

    def _span(self, end: int) -> int:
        """Slots attention reads when the highest written slot is ``end - 1``: a multiple of 256 (few graphs)."""
        return min(self.max_len, 256 * math.ceil(end / 256))

    def _static_for(self, b: int, t: int, span: int) -> _Static:
        key = (b, t, span)
        st = self._static.get(key)
        if st is not None:
            return st
        z = lambda *s: torch.zeros(*s, dtype=torch.long, device=self.device)  # noqa: E731
        st = _Static(z(b, t), z(b, t), torch.arange(t, device=self.device), z(b))
        if self.graphs:
            # warm up on a side stream (allocator, lazy inits), then capture; the caller fills the buffers later
            keep = self.valid.clone()
            self.valid[:b] = True  # no fully masked row during warm-up
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._pass(st.ids, st.pos, st.slots, st.last, span)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            st.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(st.graph, pool=self._pool):
                st.logits = self._pass(st.ids, st.pos, st.slots, st.last, span)
            self.valid.copy_(keep)
        self._static[key] = st
        return st

    def _pass(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        """One pass: through the Triton kernels when they are on and the pass is short, else the PyTorch layer."""
        if self.short is not None and ids.numel() <= kernels.MAX_ROWS:
            return self._forward_short(ids, pos, slots, last, span)
        return self._forward(ids, pos, slots, last, span)

    def _run(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        b, t = ids.shape
        if not self.graphs or t > self.graph_max_tokens:
            return self._pass(ids, pos, slots, last, span)
        st = self._static_for(b, t, span)
        st.ids.copy_(ids)
        st.pos.copy_(pos)
        st.slots.copy_(slots)
        st.last.copy_(last)
        st.graph.replay()
        return st.logits

