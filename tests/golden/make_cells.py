"""Makes the single-cell golden cases (tests/golden/cell_*.safetensors) with PyTorch.

A state_dict of nn.RNNCell, nn.LSTMCell or nn.GRUCell (names weight_ih, weight_hh, bias_ih,
bias_hh), and a case that applies the cell T times in float64 from h0 (and c0): `input`
[T, B, I], `h0`, `c0`, and the answers `output` [T, B, H] (h after every step), `h_n` and
`c_n` [1, B, H], all saved as float32. Run with torch and safetensors installed:

    python tests/golden/make_cells.py tests/golden
"""
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else "."
torch.manual_seed(0)
T, B, I, H = 5, 3, 4, 6
for name, cell in [
    ("cell_rnn_tanh", torch.nn.RNNCell(I, H)),
    ("cell_rnn_relu_nobias", torch.nn.RNNCell(I, H, bias=False, nonlinearity="relu")),
    ("cell_lstm", torch.nn.LSTMCell(I, H)),
    ("cell_gru", torch.nn.GRUCell(I, H)),
]:
    cell = cell.double()
    x = torch.rand(T, B, I, dtype=torch.float64) * 2 - 1
    h = torch.rand(B, H, dtype=torch.float64) * 2 - 1
    c = torch.rand(B, H, dtype=torch.float64) * 2 - 1
    case = {"input": x, "h0": h.unsqueeze(0)}
    lstm = isinstance(cell, torch.nn.LSTMCell)
    if lstm:
        case["c0"] = c.unsqueeze(0)
    ys = []
    with torch.no_grad():
        for t in range(T):
            if lstm:
                h, c = cell(x[t], (h, c))
            else:
                h = cell(x[t], h)
            ys.append(h)
    case["output"] = torch.stack(ys)
    case["h_n"] = h.unsqueeze(0)
    if lstm:
        case["c_n"] = c.unsqueeze(0)
    meta = {}
    if isinstance(cell, torch.nn.RNNCell):
        meta["nonlinearity"] = cell.nonlinearity
    sd = {k: v.float().contiguous() for k, v in cell.state_dict().items()}
    save_file(sd, f"{out}/{name}.model.safetensors", metadata=meta)
    save_file({k: v.float().contiguous() for k, v in case.items()}, f"{out}/{name}.case.safetensors")
    print(name, sorted(sd))
