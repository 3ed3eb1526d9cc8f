"""``eventrunner.catalyst.contrib`` / ``eventrunner.catalyst.data`` against Catalyst 22.4.

Every expected value below was computed by catalyst 22.4 (side venv, torch 2.13) on the same
seeded inputs (``torch.Generator``; Python/NumPy seeds for the batch sampler).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from eventrunner.catalyst.contrib.data import HardTripletsSampler
from eventrunner.catalyst.contrib.layers import Flatten, GlobalAvgPool2d, GlobalMaxPool2d, Lambda
from eventrunner.catalyst.contrib.losses import IoULoss, TripletMarginLossWithSampler
from eventrunner.catalyst.contrib.models import MnistSimpleNet
from eventrunner.catalyst.data import BatchBalanceClassSampler as ExportedSampler
from eventrunner.catalyst.data.sampler import BatchBalanceClassSampler
from tests.catalyst_port._compare import close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- layers -------------------------------------------------------------------------------

# computed by catalyst 22.4
GMAX = [[[[1.7480201721191406]], [[1.686045527458191]], [[1.2234563827514648]]],
        [[[1.8011449575424194]], [[1.478774905204773]], [[1.7843701839447021]]]]  # fmt: skip
GAVG = [[[[0.15616635978221893]], [[-0.13008029758930206]], [[-0.15469691157341003]]],
        [[[-0.13132832944393158]], [[0.15175192058086395]], [[-0.25706052780151367]]]]  # fmt: skip


def test_layers() -> None:
    x = torch.randn(2, 3, 4, 5, generator=_gen(20))
    close(GlobalMaxPool2d()(x), GMAX)
    close(GlobalAvgPool2d()(x), GAVG)
    assert GlobalMaxPool2d.out_features(7) == 7
    assert list(Flatten()(x).shape) == [2, 60]  # computed by catalyst 22.4
    assert torch.equal(Lambda(lambda t: t.view(2, -1))(x), x.view(2, -1))
    with pytest.raises(ValueError, match="GlobalMaxPool2d"):
        GlobalMaxPool2d()(x[0])


# --- IoULoss ------------------------------------------------------------------------------

# computed by catalyst 22.4
IOU = {
    "macro": 0.7465111017227173,
    "micro": 0.7463902235031128,
    "weighted": 0.7544938921928406,
    "macro_empty": 0.4893234372138977,  # class 2 with no target and no output
    "last_dim": 0.7465111017227173,
    "eps": 0.7465493679046631,
}


def test_iou_loss() -> None:
    o = torch.sigmoid(torch.randn(4, 3, 5, 5, generator=_gen(10)))
    t = (torch.rand(4, 3, 5, 5, generator=_gen(11)) < 0.4).float()
    o2, t2 = o.clone(), t.clone()
    o2[:, 2] = 0
    t2[:, 2] = 0
    close(IoULoss()(o, t), IOU["macro"])
    close(IoULoss(mode="micro")(o, t), IOU["micro"])
    close(IoULoss(mode="weighted", weights=[0.2, 0.3, 0.5])(o, t), IOU["weighted"])
    close(IoULoss()(o2, t2), IOU["macro_empty"])
    close(IoULoss(class_dim=-1)(o.permute(0, 2, 3, 1), t.permute(0, 2, 3, 1)), IOU["last_dim"])
    close(IoULoss(eps=1e-2)(o, t), IOU["eps"])
    with pytest.raises(ValueError, match="IoULoss: mode"):
        IoULoss(mode="per-class")


# --- triplets -----------------------------------------------------------------------------

TRIPLET_LABELS = [2, 0, 1, 2, 0, 3, 1, 3, 0, 2, 1, 3]
# computed by catalyst 22.4: norm_required -> ((anchors, positives, negatives), loss at margin 0.5)
TRIPLETS = {
    False: (
        [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
         [3, 4, 6, 0, 1, 7, 2, 11, 4, 0, 2, 7],
         [6, 5, 8, 10, 6, 1, 4, 9, 9, 10, 9, 9]],
        2.1485495567321777,
    ),
    True: (
        [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
         [9, 4, 10, 0, 1, 11, 2, 11, 4, 0, 2, 7],
         [6, 5, 8, 10, 0, 1, 0, 9, 5, 10, 9, 0]],
        2.015599489212036,
    ),
}  # fmt: skip


@pytest.mark.parametrize("norm_required", [False, True])
def test_hard_triplets_and_loss(norm_required: bool) -> None:
    feats = torch.randn(12, 4, generator=_gen(30))
    ids, loss = TRIPLETS[norm_required]
    sampler = HardTripletsSampler(norm_required=norm_required)
    assert [list(v) for v in sampler._sample(feats, TRIPLET_LABELS)] == ids
    criterion = TripletMarginLossWithSampler(margin=0.5, sampler_inbatch=sampler)
    close(criterion(feats, TRIPLET_LABELS), loss)
    close(criterion(feats, torch.tensor(TRIPLET_LABELS)), loss)
    anchor, positive, negative = sampler.sample(feats, TRIPLET_LABELS)
    assert torch.equal(anchor, feats) and torch.equal(positive, feats[ids[1]])
    assert torch.equal(negative, feats[ids[2]])


def test_triplet_sampler_rejects_bad_batches() -> None:
    feats = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        HardTripletsSampler().sample(feats, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="at least 2 classes"):
        HardTripletsSampler().sample(feats, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="integer"):
        HardTripletsSampler().sample(feats, torch.tensor([0.0, 0.0, 1.0, 1.0]))


# --- MnistSimpleNet -----------------------------------------------------------------------

# computed by catalyst 22.4
MNIST_KEYS = ["_net.0.weight", "_net.0.bias", "_net.2.weight", "_net.2.bias",
              "_net.6.weight", "_net.6.bias", "_net.8.weight", "_net.8.bias"]  # fmt: skip
MNIST_PARAMS = 1200656
MNIST_OUT = [
    [-0.518631637096405, 0.11103301495313644, 0.14030693471431732, 0.021865615621209145,
     -0.18720786273479462, 0.21266181766986847, -0.06969261169433594, 0.291349858045578,
     -0.3196437954902649, 0.37648019194602966, -0.01903650537133217, 0.19936545193195343,
     0.10343854874372482, -0.08387909084558487, 0.45124220848083496, 0.15212441980838776],
    [-0.0041163619607687, 0.00031657141516916454, -0.1187402606010437, -0.02621515467762947,
     -0.14830094575881958, 0.1687656044960022, -0.2302098423242569, 0.2437095046043396,
     -0.09330934286117554, 0.4708120822906494, 0.4346451163291931, 0.2641393840312958,
     0.11304966360330582, 0.34085404872894287, 0.41529181599617004, 0.17845161259174347],
]  # fmt: skip
MNIST_OUT_NONORM = [
    [-0.2038002908229828, 0.04363127797842026, 0.05513468757271767, 0.00859226193279028,
     -0.07356476783752441, 0.08356709778308868, -0.027386248111724854, 0.1144881621003151,
     -0.1256064921617508, 0.14794078469276428, -0.007480541244149208, 0.07834218442440033,
     0.04064697399735451, -0.032960932701826096, 0.17731909453868866, 0.05977846309542656],
    [-0.0018887631595134735, 0.00014525651931762695, -0.054483115673065186,
     -0.01202863547950983, -0.06804682314395905, 0.0774368867278099, -0.10563012957572937,
     0.11182435601949692, -0.04281432181596756, 0.21602873504161835, 0.19943378865718842,
     0.12119845300912857, 0.051872026175260544, 0.15639843046665192, 0.1905536651611328,
     0.08188124001026154],
]  # fmt: skip


def test_mnist_simple_net() -> None:
    model = MnistSimpleNet(out_features=16)
    plain = MnistSimpleNet(out_features=16, normalize=False)
    assert list(model.state_dict()) == MNIST_KEYS
    assert sum(p.numel() for p in model.parameters()) == MNIST_PARAMS
    assert sum(p.numel() for p in plain.parameters()) == MNIST_PARAMS
    gen = _gen(40)  # the same state dict as catalyst's run: keys in order, randn * 0.05
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    plain.load_state_dict(state)
    images = torch.randn(2, 1, 28, 28, generator=_gen(41))
    # float32 convolutions and matmuls sum in an order that depends on the CPU's vector unit:
    # catalyst's values, recorded on another machine, and ours on an AVX-512 Xeon differ by up
    # to 1.5e-6. 1e-5 is torch.testing.assert_close's float32 tolerance.
    with torch.no_grad():
        close(model(images), MNIST_OUT, tolerance=1e-5)
        close(plain(images), MNIST_OUT_NONORM, tolerance=1e-5)


# --- BatchBalanceClassSampler -------------------------------------------------------------

# classes 0-3 with 8 samples each, class 4 with 3 (drawn with replacement when 4 are asked)
BBCS_LABELS = [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 4,
               0, 1, 2, 3, 0, 1, 2, 3]  # fmt: skip
# computed by catalyst 22.4: random.seed(0); np.random.seed(0); num_classes=3, num_samples=4
BBCS_BATCHES = [[30, 12, 8, 34, 13, 26, 4, 26, 27, 14, 22, 5],
                [24, 11, 16, 20, 12, 25, 30, 34, 19, 23, 6, 28]]  # fmt: skip
# computed by catalyst 22.4: seeds 1, numpy labels, num_classes=5, num_samples=2, num_batches=3
BBCS_BATCHES_2 = [[32, 10, 9, 14, 4, 13, 8, 30, 2, 29],
                  [12, 25, 4, 26, 16, 11, 19, 23, 22, 9],
                  [27, 22, 30, 25, 4, 13, 32, 23, 29, 2]]  # fmt: skip


def test_batch_balance_class_sampler_matches_catalyst_draws() -> None:
    assert ExportedSampler is BatchBalanceClassSampler
    random.seed(0)
    np.random.seed(0)
    sampler = BatchBalanceClassSampler(BBCS_LABELS, num_classes=3, num_samples=4)
    assert (len(sampler), sampler.batch_size, sampler.batches_in_epoch) == (2, 12, 2)
    assert list(sampler) == BBCS_BATCHES
    random.seed(1)
    np.random.seed(1)
    sampler = BatchBalanceClassSampler(
        np.array(BBCS_LABELS), num_classes=5, num_samples=2, num_batches=3
    )
    assert len(sampler) == 3
    assert list(sampler) == BBCS_BATCHES_2


def test_batch_balance_class_sampler_in_a_loader() -> None:
    data = torch.utils.data.TensorDataset(torch.tensor(BBCS_LABELS))
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=BatchBalanceClassSampler(BBCS_LABELS, num_classes=2, num_samples=3)
    )
    batches = [b[0].tolist() for b in loader]
    assert len(batches) == len(BBCS_LABELS) // 6
    for batch in batches:
        assert sorted(batch.count(c) for c in set(batch)) == [3, 3]


def test_batch_balance_class_sampler_rejects() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        BatchBalanceClassSampler(BBCS_LABELS, num_classes=6, num_samples=2)
    with pytest.raises(ValueError, match="num_samples"):
        BatchBalanceClassSampler(BBCS_LABELS, num_classes=2, num_samples=1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        BatchBalanceClassSampler([0, 0, 1], num_classes=2, num_samples=2)
