r"""Writes the small PyTorch fixture of tests/test_torch_weights.py. Needs torch; run once.

torch is no requirement of mer-jax or its tests: this script ran once, on a machine with
torch (2.13.0+cpu, in a virtual environment of its own outside the repository), and its
outputs are committed under tests/data/official_ststnet/:

  python scripts/make_official_ststnet_fixture.py tests/data/official_ststnet

- `weights.pth`: a state dict of the authors' STSTNet (christy1206/STSTNet, main.py: its
  layer names, sizes and forward pass re-typed below) with random weights and BatchNorm
  statistics (seed 0), in torch.save's zip layout;
- `weights_legacy.pth`: the same in the legacy layout (PyTorch <= 1.5 wrote it; the
  authors' requirements.txt pins torch 1.5.0);
- `input.npy`: a fixed (4, 28, 28, 3) uint8 batch, NHWC as `cv2.imread` returns images
  (the official code makes them float and permutes them to NCHW);
- `logits.npy`: the (4, 3) logits PyTorch computed for it in eval mode.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class STSTNet(nn.Module):
    """The released STSTNet: three conv (padding 2) -> ReLU -> BatchNorm -> max-pool
    (3, stride 3, padding 1) -> dropout streams, concatenated, average-pooled, one dense."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, kernel_size=3, padding=2)
        self.conv2 = nn.Conv2d(3, 5, kernel_size=3, padding=2)
        self.conv3 = nn.Conv2d(3, 8, kernel_size=3, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(3)
        self.bn2 = nn.BatchNorm2d(5)
        self.bn3 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=0.5)
        self.fc = nn.Linear(5 * 5 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        streams = []
        for conv, norm in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            streams.append(self.dropout(self.maxpool(norm(self.relu(conv(x))))))
        x = self.avgpool(torch.cat(streams, 1))
        return self.fc(x.view(x.size(0), -1))


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = STSTNet()
    # Non-trivial BatchNorm statistics and affine parameters, so a wrong mapping shows.
    with torch.no_grad():
        for norm in (model.bn1, model.bn2, model.bn3):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
            norm.running_mean.uniform_(0.0, 100.0)
            norm.running_var.uniform_(100.0, 2000.0)
    model.eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)
    # As the official code feeds them: float 0..255, NHWC permuted to NCHW.
    batch = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        logits = model(batch).numpy()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pth")
    torch.save(model.state_dict(), out / "weights_legacy.pth", _use_new_zipfile_serialization=False)
    np.save(out / "input.npy", images)
    np.save(out / "logits.npy", logits.astype(np.float32))
    print(f"wrote {out}: logits {logits.tolist()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
