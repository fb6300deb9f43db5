"""Captum's gradient methods with one backward root per pass.

Captum differentiates `torch.autograd.grad(torch.unbind(outputs), inputs)`: one graph root and
one `ones_like` per output row. For Integrated Gradients that is rows × background × steps roots
a pass (~50,000 in a fused table's report), and the roots, not the network, took most of the
time: a fused run's explanation spent 30 of its 32 s there. The gradient of the outputs' sum is
the same number (autograd sums what several roots send to an input), from one root.
"""
from __future__ import annotations

import torch


def summed_gradients(forward_fn, inputs, target_ind=None, additional_forward_args=None) -> tuple[torch.Tensor, ...]:
    """What captum._utils.gradient.compute_gradients returns, from the outputs' sum."""
    from captum._utils.common import _run_forward  # Captum's own target selection, so targets mean the same

    with torch.autograd.set_grad_enabled(True):
        outputs = _run_forward(forward_fn, inputs, target_ind, additional_forward_args)
        return torch.autograd.grad(outputs.sum(), inputs)


def integrated_gradients(forward):
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(forward)
    method.gradient_func = summed_gradients
    return method


def deep_lift(forward):
    from captum.attr import DeepLift

    method = DeepLift(forward)
    method.gradient_func = summed_gradients
    return method
