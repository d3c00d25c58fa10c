"""What the forward and backward of each backend write where the backends differ.

:mod:`.emit` walks the schedule once for both backends and asks the backend's emission here for
the few lines that differ. NumPy writes the plain program: products as ``@``, a dict as the
cache, nothing pooled. torch adds its speed machinery, all of it here: recurrent products of
equal gate blocks computed block-major (``_blocked``), hoisted input GEMMs with their biases in
one ``addmm`` into pooled buffers, saved values and outputs written straight into their
sequence buffers (``out=``, while no gradient is recorded), the cache as a ``_Cache`` whose
buffers go back to the pool, and buffers released after the call.
"""

from __future__ import annotations

from ..ir import CellIR, Pointwise
from .plan import Plan, _batched


class NumpyEmission:
    """The plain program: nothing pooled, nothing written in place."""

    def blocked_groups(self, ir: CellIR, p: Plan) -> set[str]:
        """Per-step groups whose product is computed block-major."""
        return set()

    def hoisted_product(self, g, flat: str, product: str, folded: bool) -> str:
        """An input GEMM over the whole sequence (``product``: ``flat @ W.T``, plus the biases
        where ``folded``)."""
        return product

    def direct_targets(self, ir: CellIR, saved: list[str], shifted: set[str]) -> dict[str, tuple[str, str]]:
        """Values computed straight into their sequence buffers: name -> (slot code, width)."""
        return {}

    def direct_preamble(self, first, saved, written, shifted, targets, direct_out) -> list[str]:
        """The lines before the loop that make the buffers of :meth:`direct_targets`."""
        return []

    def cache_brackets(self) -> tuple[str, str]:
        return "{", "}"

    def after_cache(self, code, pooled: list[str]) -> None:
        """After the cache is made, with the saved buffers that came from the pool."""

    def release_forward(self, code, hoisted: list[str], kept: str) -> None:
        """At the forward's end: the hoisted GEMM results, which nothing returned holds."""

    def accumulate(self, code, target: str, vector: str, factor: str) -> bool:
        """Write ``_d_target += vector * factor`` in place if the backend does; False otherwise."""
        return False

    def release_backward(self, code, owned: list[str], carries: str) -> None:
        """At the backward's end: the stacked step gradients, which nothing returned holds."""


class TorchEmission(NumpyEmission):
    """The plain program plus torch's speed machinery (see the module docstring)."""

    def blocked_groups(self, ir: CellIR, p: Plan) -> set[str]:
        out_dim = {w.name: w.out_dim for w in ir.weights}
        return {g.arg for g in p.groups.values()
                if not g.hoisted and not g.const and len(g.terms) > 1 and len({out_dim[w] for _, w in g.terms}) == 1}  # fmt: skip

    def hoisted_product(self, g, flat: str, product: str, folded: bool) -> str:
        into = f"out=_scratch((_T * _B, {g.var}.shape[0]), _X_{g.arg})"
        return (f"torch.addmm(_b_{g.arg}, {flat}, {g.var}.T, {into})" if folded
                else f"torch.mm({flat}, {g.var}.T, {into})")  # fmt: skip

    def direct_targets(self, ir: CellIR, saved: list[str], shifted: set[str]) -> dict[str, tuple[str, str]]:
        from .emit import _width

        targets = {}
        batched = _batched(ir)
        for x in saved:
            width = _width(ir, x)
            if width and x in batched and x not in ir.set_vectors:
                targets[x] = (f"None if _sv_{x} is None else _sv_{x}[_t + 1]" if x in shifted
                              else f"None if _sv_{x} is None else _sv_{x}[_t]", width)  # fmt: skip
        # and so are the outputs (the new values of the output state)
        out_new = ir.new(ir.output)
        width = _width(ir, out_new)
        if isinstance(ir.node_map.get(out_new), Pointwise) and out_new not in targets and width:
            targets[out_new] = ("_out[_t] if _direct else None", width)
        return targets

    def direct_preamble(self, first, saved, written, shifted, targets, direct_out) -> list[str]:
        return [
            "    _direct = not torch.is_grad_enabled()  # out= writes are not differentiable"
        ] + [
            f"    _sv_{x} = _scratch(({'_T + 1' if x in shifted else '_T'}, _B, {targets[x][1]}), _X_{first}) if save and _direct else None"
            for x in saved if x in written
        ] + ([f"    _out = _empty((_T, _B, {direct_out}), _X_{first})"] if direct_out else [])  # fmt: skip

    def cache_brackets(self) -> tuple[str, str]:
        return "_Cache({", "})"

    def after_cache(self, code, pooled: list[str]) -> None:
        if pooled:
            code("    if _direct:  # the saved buffers go back to the pool when the record is freed")
            code(f"        _recycle(cache, [{', '.join(pooled)}])")

    def release_forward(self, code, hoisted: list[str], kept: str) -> None:
        if hoisted:
            code("if not torch.is_grad_enabled():")
            code(f"    _release([{', '.join(hoisted)}], [{kept}] + (list(_saved.values()) if save else []))")

    def accumulate(self, code, target: str, vector: str, factor: str) -> bool:
        code(f"_d_{target} = torch.addcmul(_d_{target}, {vector}, {factor})")
        return True

    def release_backward(self, code, owned: list[str], carries: str) -> None:
        code("if not torch.is_grad_enabled():")
        code(f"    _release([{', '.join(owned)}], [*grads.values(), *d_inputs.values(), {carries}])")


EMISSION = {"numpy": NumpyEmission(), "torch": TorchEmission()}
