"""Parity with Catalyst 22.4: segmentation (IoU, Dice, Trevsky), R², CMC, the recsys
metrics (hitrate, MRR, MAP, NDCG) and the confusion matrix.

Every expected value below was computed by catalyst 22.4 (``catalyst.metrics``, torch 2.13)
from the inputs built here (hashed against the bytes catalyst's environment built); the tests
compute them with ``eventrunner.catalyst.metrics`` and compare at 1e-6.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

pytest.importorskip("torchmetrics")

from eventrunner.catalyst import metrics as M

from ._compare import close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def segmentation(seed=10, n=5, classes=3, size=6):
    """Probabilities and 0/1 masks (N, C, H, W); the last class has no target pixel and
    no output above 0.4 (an empty union once thresholded at 0.5)."""
    g = _gen(seed)
    outputs = torch.rand(n, classes, size, size, generator=g)
    targets = (torch.rand(n, classes, size, size, generator=g) < 0.4).float()
    outputs[:, -1] *= 0.4
    targets[:, -1] = 0
    return outputs, targets


def regression(seed=11, n=30):
    g = _gen(seed)
    targets = torch.randn(n, generator=g) * 2 + 1
    return targets + torch.randn(n, generator=g), targets


def recsys(seed=12, n=12, items=8):
    """Scores and 0/1 relevance; row 0 has no relevant item."""
    g = _gen(seed)
    outputs = torch.randn(n, items, generator=g)
    targets = (torch.rand(n, items, generator=g) < 0.3).float()
    targets[0] = 0
    return outputs, targets


def recsys_graded_ties(seed=13, n=10, items=6):
    """Integer scores (ties) and graded relevance 0..3."""
    g = _gen(seed)
    outputs = torch.randint(0, 3, (n, items), generator=g).float()
    return outputs, torch.randint(0, 4, (n, items), generator=g).float()


def cmc(seed=14, n=20, dim=4):
    """Embeddings, labels in 0..3 and an is_query flag (every third row)."""
    g = _gen(seed)
    embeddings = torch.randn(n, dim, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    is_query = (torch.arange(n) % 3 == 0).long()
    return embeddings, labels, is_query


def confusion(seed=15, n=25, classes=4):
    """Scores and labels; the targets never hit the last class."""
    g = _gen(seed)
    return torch.randn(n, classes, generator=g), torch.randint(0, classes - 1, (n,), generator=g)


# sha256 (first 16 hex digits) of the inputs' bytes as catalyst's environment built them
INPUT_SHA = {
    "segmentation": "0deb0249d6502c42",
    "regression": "30b3073045f88f13",
    "recsys": "0ead426edf2c91e3",
    "recsys_graded_ties": "1679141b9f5dbd28",
    "cmc": "0af2cd1df61ab497",
    "confusion": "7932d250fcf17b53",
}

# computed by catalyst 22.4 (segmentation() in batches of 2, 1, 2: IOUMetric(threshold=0.5,
# weights, class_names, per class, prefix, suffix) update_key_value/compute_key_value/compute;
# DiceMetric() (soft, no threshold); TrevskyMetric(alpha=0.3, threshold=0.5, per class);
# TrevskyMetric(alpha=0.7, beta=0.2, class_dim=-1, weights) on (N, H, W, C); functional
# iou/dice/trevsky(alpha=0.3) per mode and threshold None/0.5 on the whole;
# get_segmentation_statistics(threshold=0.5))
SEGMENTATION = {
    "iou_batches": [
        {
            "v_iou_s/a": 0.3076923191547394,
            "v_iou_s/b": 0.30000001192092896,
            "v_iou_s/c": 1.0,
            "v_iou_s": 0.535897433757782,
            "v_iou_s/_weighted": 0.6515384912490845,
        },
        {
            "v_iou_s/a": 0.30000001192092896,
            "v_iou_s/b": 0.23076923191547394,
            "v_iou_s/c": 1.0,
            "v_iou_s": 0.5102564096450806,
            "v_iou_s/_weighted": 0.6292307376861572,
        },
        {
            "v_iou_s/a": 0.2884615361690521,
            "v_iou_s/b": 0.2857142984867096,
            "v_iou_s/c": 1.0,
            "v_iou_s": 0.5247252583503723,
            "v_iou_s/_weighted": 0.6434066295623779,
        },
    ],
    "iou": {
        "v_iou_s/a": 0.2985074520111084,
        "v_iou_s/b": 0.2800000011920929,
        "v_iou_s/c": 1.0,
        "v_iou_s/_micro": 0.2895752787590027,
        "v_iou_s": 0.5261691212654114,
        "v_iou_s/_macro": 0.5261691212654114,
        "v_iou_s/_weighted": 0.6437014937400818,
    },
    "iou_compute": [
        [0.2985074520111084, 0.2800000011920929, 1.0],
        0.2895752787590027,
        0.5261691212654114,
        0.6437014937400818,
    ],
    "dice_batches": [
        {
            "dice/class_00": 0.4841008186340332,
            "dice/class_01": 0.43722304701805115,
            "dice/class_02": 0.0,
            "dice": 0.30710795521736145,
        },
        {
            "dice/class_00": 0.45968618988990784,
            "dice/class_01": 0.3474257290363312,
            "dice/class_02": 0.0,
            "dice": 0.26903730630874634,
        },
        {
            "dice/class_00": 0.471385657787323,
            "dice/class_01": 0.4336114823818207,
            "dice/class_02": 0.0,
            "dice": 0.30166569352149963,
        },
    ],
    "dice": {
        "dice/_micro": 0.4034835994243622,
        "dice": 0.297730952501297,
        "dice/_macro": 0.297730952501297,
    },
    "trevsky": {
        "trevsky/class_00": 0.46620044112205505,
        "trevsky/class_01": 0.40509262681007385,
        "trevsky/class_02": 1.0,
        "trevsky/_micro": 0.4355400800704956,
        "trevsky": 0.6237643361091614,
        "trevsky/_macro": 0.6237643361091614,
    },
    "trevsky_last_dim_batches": [
        {
            "trevsky/class_00": 0.4936395287513733,
            "trevsky/class_01": 0.5116413235664368,
            "trevsky/class_02": 0.0,
            "trevsky": 0.33509361743927,
            "trevsky/_weighted": 0.4936395287513733,
        },
        {
            "trevsky/class_00": 0.5028137564659119,
            "trevsky/class_01": 0.4452804625034332,
            "trevsky/class_02": 0.0,
            "trevsky": 0.31603142619132996,
            "trevsky/_weighted": 0.5028137564659119,
        },
        {
            "trevsky/class_00": 0.49456992745399475,
            "trevsky/class_01": 0.49097317457199097,
            "trevsky/class_02": 0.0,
            "trevsky": 0.32851436734199524,
            "trevsky/_weighted": 0.49456992745399475,
        },
    ],
    "trevsky_last_dim": {
        "trevsky/_micro": 0.47089502215385437,
        "trevsky": 0.32914069294929504,
        "trevsky/_macro": 0.32914069294929504,
        "trevsky/_weighted": 0.49580255150794983,
    },
    "functional": {
        "per-class/None": {
            "iou": [0.3107161521911621, 0.2650831341743469, 0.0],
            "dice": [0.47411659359931946, 0.41907623410224915, 0.0],
            "trevsky": [0.47749701142311096, 0.391084760427475, 0.0],
        },
        "per-class/0.5": {
            "iou": [0.2985074520111084, 0.2800000011920929, 1.0],
            "dice": [0.4597701132297516, 0.4375, 1.0],
            "trevsky": [0.46620044112205505, 0.40509262681007385, 1.0],
        },
        "micro/None": {
            "iou": 0.2527274787425995,
            "dice": 0.4034835994243622,
            "trevsky": 0.3782173693180084,
        },
        "micro/0.5": {
            "iou": 0.2895752787590027,
            "dice": 0.4491018056869507,
            "trevsky": 0.4355400800704956,
        },
        "macro/None": {
            "iou": 0.19193309545516968,
            "dice": 0.297730952501297,
            "trevsky": 0.2895272672176361,
        },
        "macro/0.5": {
            "iou": 0.5261691212654114,
            "dice": 0.6324233412742615,
            "trevsky": 0.6237643361091614,
        },
        "weighted/None": {
            "iou": 0.1416681706905365,
            "dice": 0.2205461859703064,
            "trevsky": 0.21282483637332916,
        },
        "weighted/0.5": {
            "iou": 0.6437014937400818,
            "dice": 0.7232040166854858,
            "trevsky": 0.7147678732872009,
        },
    },
    "stats": [[40.0, 35.0, 0.0], [44.0, 61.0, 0.0], [50.0, 29.0, 0.0]],
}
# computed by catalyst 22.4 (R2Squared(prefix='valid_', suffix='_x') on regression() in batches
# of 10, 7, 13; r2_squared on the whole, on it viewed (6, 5), and of a constant target)
R2 = {
    "metric": {"valid_r2squared_x": 0.8296571969985962},
    "functional": [0.8296571969985962],
    "functional_2d": [0.8296571969985962],
    "functional_constant": [-math.inf],
}
# computed by catalyst 22.4 (functional hitrate/mrr/mean_average_precision/ndcg at topk=[1, 3,
# 20], ndcg linear_rank, reciprocal_rank(k=3), average_precision(k=4), dcg, on recsys() and
# recsys_graded_ties(); the metric objects on recsys() in batches of 5, 3, 4)
RECSYS = {
    "recsys": {
        "hitrate": [0.1458333283662796, 0.4027777910232544, 0.9166666865348816],
        "mrr": [0.25, 0.4583333730697632, 0.4930555522441864],
        "map": [0.25, 0.4583333730697632, 0.4379298985004425],
        "ndcg": [0.25, 0.3536730706691742, 0.5876128077507019],
        "ndcg_linear": [0.25, 0.38591083884239197, 0.6008628010749817],
        "reciprocal_rank": [
            [0.0],
            [1.0],
            [0.3333333432674408],
            [1.0],
            [0.0],
            [0.5],
            [0.5],
            [0.3333333432674408],
            [1.0],
            [0.5],
            [0.0],
            [0.3333333432674408],
        ],
        "average_precision": [
            0.0,
            1.0,
            0.4166666865348816,
            1.0,
            0.25,
            0.5,
            0.5,
            0.3333333432674408,
            1.0,
            0.5,
            0.0,
            0.3333333432674408,
        ],
        "dcg": [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.43067657947540283, 0.38685280084609985, 0.0, 0.3333333432674408, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.3562071919441223, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.43067657947540283, 0.38685280084609985, 0.3562071919441223, 0.0, 0.0],
            [0.0, 0.6309297680854797, 0.0, 0.0, 0.0, 0.0, 0.3333333432674408, 0.0],
            [0.0, 0.6309297680854797, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.0, 0.38685280084609985, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.3562071919441223, 0.3333333432674408, 0.31546488404273987],
            [0.0, 0.6309297680854797, 0.0, 0.0, 0.0, 0.3562071919441223, 0.3333333432674408, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.3562071919441223, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.31546488404273987],
        ],
    },
    "recsys_graded_ties": {
        "hitrate": [0.11002136766910553, 0.5149847865104675, 1.0],
        "mrr": [0.6000000238418579, 0.5833333730697632, 0.4949999749660492],
        "map": [2.799999952316284, 3.8305556774139404, 3.763444423675537],
        "ndcg": [0.3142856955528259, 0.5414924621582031, 0.7392693758010864],
        "ndcg_linear": [0.4000000059604645, 0.6501123905181885, 0.8192723989486694],
        "reciprocal_rank": [
            [0.5],
            [1.0],
            [0.5],
            [0.3333333432674408],
            [0.5],
            [0.3333333432674408],
            [0.3333333432674408],
            [1.0],
            [1.0],
            [0.3333333432674408],
        ],
        "average_precision": [
            5.916666507720947,
            8.125,
            4.375,
            2.6666667461395264,
            2.3611111640930176,
            4.333333492279053,
            1.9166666269302368,
            1.375,
            6.0,
            2.3333332538604736,
        ],
        "dcg": [
            [
                3.0,
                4.416508197784424,
                1.5,
                3.0147361755371094,
                1.1605584621429443,
                2.493450403213501,
            ],
            [7.0, 4.416508197784424, 3.5, 1.2920297384262085, 1.1605584621429443, 0.0],
            [3.0, 4.416508197784424, 0.5, 1.2920297384262085, 0.0, 1.0686216354370117],
            [1.0, 0.0, 3.5, 1.2920297384262085, 1.1605584621429443, 0.3562071919441223],
            [
                0.0,
                4.416508197784424,
                0.5,
                0.43067657947540283,
                0.38685280084609985,
                0.3562071919441223,
            ],
            [0.0, 1.892789363861084, 3.5, 3.0147361755371094, 0.38685280084609985, 0.0],
            [
                0.0,
                0.6309297680854797,
                3.5,
                0.43067657947540283,
                2.7079696655273438,
                0.3562071919441223,
            ],
            [1.0, 0.6309297680854797, 0.5, 1.2920297384262085, 2.7079696655273438, 0.0],
            [7.0, 0.6309297680854797, 3.5, 0.0, 1.1605584621429443, 0.3562071919441223],
            [
                0.0,
                0.6309297680854797,
                1.5,
                3.0147361755371094,
                0.38685280084609985,
                2.493450403213501,
            ],
        ],
    },
    "objects": {
        "HitrateMetric": {
            "batches": [
                {"hitrate01": 0.30000001192092896, "hitrate03": 0.3499999940395355},
                {"hitrate01": 0.0, "hitrate03": 0.6666666865348816},
                {"hitrate01": 0.0625, "hitrate03": 0.2708333432674408},
            ],
            "loader": {
                "hitrate01": 0.14583333830038706,
                "hitrate03": 0.4027777835726738,
                "hitrate01/std": 0.13830686732597253,
                "hitrate03/std": 0.16306074606211207,
            },
        },
        "MRRMetric": {
            "batches": [
                {"p_mrr01": 0.4000000059604645, "p_mrr03": 0.46666669845581055},
                {"p_mrr01": 0.0, "p_mrr03": 0.4444444477558136},
                {"p_mrr01": 0.25, "p_mrr03": 0.4583333432674408},
            ],
            "loader": {
                "p_mrr01": 0.2500000024835269,
                "p_mrr03": 0.4583333507180214,
                "p_mrr01/std": 0.1651445672297999,
                "p_mrr03/std": 0.009174709800095604,
            },
        },
        "MAPMetric": {
            "batches": [
                {"map02_s": 0.4000000059604645, "map05_s": 0.5605555772781372},
                {"map02_s": 0.3333333432674408, "map05_s": 0.4555555582046509},
                {"map02_s": 0.375, "map05_s": 0.4583333432674408},
            ],
            "loader": {
                "map02_s": 0.3750000049670537,
                "map05_s": 0.5002314945062002,
                "map02_s/std": 0.027524092487595405,
                "map05_s/std": 0.05326145883840111,
            },
        },
        "NDCGMetric": {
            "batches": [
                {
                    "ndcg01": 0.4000000059604645,
                    "ndcg03": 0.36955732107162476,
                    "ndcg08": 0.6053656339645386,
                },
                {"ndcg01": 0.0, "ndcg03": 0.4414520561695099, "ndcg08": 0.5886454582214355},
                {"ndcg01": 0.25, "ndcg03": 0.2679835557937622, "ndcg08": 0.5646474957466125},
            ],
            "loader": {
                "ndcg01": 0.2500000024835269,
                "ndcg03": 0.3536730830868085,
                "ndcg08": 0.5876128772894541,
                "ndcg01/std": 0.1651445672297999,
                "ndcg03/std": 0.0699010793121089,
                "ndcg08/std": 0.018312031602697725,
            },
        },
    },
}
# computed by catalyst 22.4 (CMCMetric(topk=[1, 3, 5], prefix='v_') on cmc() in batches of 7, 6,
# 7; cmc_score at k=1, 2, 4 on the whole; ReidCMCMetric(topk=[1, 2]) with camera ids arange(20)
# % 2)
CMC = {
    "metric": {
        "v_cmc01": 0.2857142984867096,
        "v_cmc03": 0.4285714328289032,
        "v_cmc05": 0.7142857313156128,
    },
    "functional": [0.2857142984867096, 0.4285714328289032, 0.5714285969734192],
    "reid": {"cmc01": 0.1428571492433548, "cmc02": 0.4285714328289032},
}
# computed by catalyst 22.4 (ConfusionMatrixMetric(4) on confusion() scores in batches of 10,
# 15; normalize=True on argmax labels and one-hot targets)
CONFUSION = {
    "scores": [[2, 2, 4, 1], [0, 5, 2, 2], [2, 2, 2, 1], [0, 0, 0, 0]],
    "normalized": [
        [0.2222222238779068, 0.2222222238779068, 0.4444444477558136, 0.1111111119389534],
        [0.0, 0.5555555820465088, 0.2222222238779068, 0.2222222238779068],
        [0.2857142984867096, 0.2857142984867096, 0.2857142984867096, 0.1428571492433548],
        [0.0, 0.0, 0.0, 0.0],
    ],
}


def _sha(*tensors: torch.Tensor) -> str:
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors)).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(INPUT_SHA))
def test_inputs_are_those_catalyst_saw(name):
    assert _sha(*globals()[name]()) == INPUT_SHA[name]


def _split(tensors: tuple, sizes: list[int]) -> list[tuple]:
    return list(zip(*(t.split(sizes) for t in tensors), strict=True))


def test_segmentation_metrics():
    ref = SEGMENTATION
    batches = _split(segmentation(), [2, 1, 2])
    metric = M.IOUMetric(
        threshold=0.5,
        weights=[0.2, 0.3, 0.5],
        class_names=["a", "b", "c"],
        compute_per_class_metrics=True,
        prefix="v_",
        suffix="_s",
    )
    metric.reset()
    close([metric.update_key_value(o, t) for o, t in batches], ref["iou_batches"])
    close(metric.compute_key_value(), ref["iou"])
    close(list(metric.compute()), ref["iou_compute"])
    # the empty class (no target, nothing above 0.5) scores 1, in Catalyst's eps / eps
    assert metric.compute_key_value()["v_iou_s/c"].item() == pytest.approx(1.0)

    metric = M.DiceMetric()
    metric.reset()
    close([metric.update_key_value(o, t) for o, t in batches], ref["dice_batches"])
    close(metric.compute_key_value(), ref["dice"])

    metric = M.TrevskyMetric(alpha=0.3, threshold=0.5, compute_per_class_metrics=True)
    metric.reset()
    for o, t in batches:
        metric.update(o, t)
    close(metric.compute_key_value(), ref["trevsky"])

    metric = M.TrevskyMetric(alpha=0.7, beta=0.2, class_dim=-1, weights=[1.0, 0.0, 0.0])
    metric.reset()
    last = [(o.permute(0, 2, 3, 1), t.permute(0, 2, 3, 1)) for o, t in batches]
    close([metric.update_key_value(o, t) for o, t in last], ref["trevsky_last_dim_batches"])
    close(metric.compute_key_value(), ref["trevsky_last_dim"])


@pytest.mark.parametrize("mode", ["per-class", "micro", "macro", "weighted"])
@pytest.mark.parametrize("threshold", [None, 0.5])
def test_functional_segmentation(mode, threshold):
    outputs, targets = segmentation()
    weights = [0.2, 0.3, 0.5] if mode == "weighted" else None
    kwargs = {"threshold": threshold, "mode": mode, "weights": weights}
    expected = SEGMENTATION["functional"][f"{mode}/{threshold}"]
    close(M.iou(outputs, targets, **kwargs), expected["iou"], "iou")
    close(M.dice(outputs, targets, **kwargs), expected["dice"], "dice")
    close(M.trevsky(outputs, targets, alpha=0.3, **kwargs), expected["trevsky"], "trevsky")
    if mode == "per-class" and threshold == 0.5:
        stats = M.get_segmentation_statistics(outputs, targets, class_dim=1, threshold=0.5)
        close(list(stats), SEGMENTATION["stats"])


def test_segmentation_refusals():
    outputs, targets = segmentation()
    with pytest.raises(ValueError, match="same shape"):
        M.iou(outputs, targets[:, :2])
    with pytest.raises(ValueError, match="mode must be one of"):
        M.dice(outputs, targets, mode="sample")
    with pytest.raises(ValueError, match="alpha must be in"):
        M.TrevskyMetric(alpha=1.5)
    metric = M.IOUMetric(class_names=["a", "b"])
    with pytest.raises(ValueError, match="2 class_names for 3 classes"):
        metric.update(outputs, targets)
    with pytest.raises(RuntimeError, match="no update"):
        M.DiceMetric().compute()


def test_r2_squared():
    metric = M.R2Squared(prefix="valid_", suffix="_x")
    metric.reset(3, 30)
    for y_pred, y_true in _split(regression(), [10, 7, 13]):
        metric.update(y_pred, y_true)
    close(metric.compute_key_value(), R2["metric"])
    outputs, targets = regression()
    close(M.r2_squared(outputs, targets), R2["functional"])
    close(M.r2_squared(outputs.view(6, 5), targets.view(6, 5)), R2["functional_2d"])
    # a constant target: Catalyst divides by a zero variance (torchmetrics would give 0)
    close(M.r2_squared(torch.ones(4) * 2, torch.ones(4)), R2["functional_constant"])


@pytest.mark.parametrize("name", ["recsys", "recsys_graded_ties"])
def test_functional_recsys(name):
    outputs, targets = globals()[name]()
    expected = RECSYS[name]
    topk = [1, 3, 20]  # 20 > the number of items: capped
    close(M.hitrate(outputs, targets, topk=topk), expected["hitrate"], "hitrate")
    close(M.mrr(outputs, targets, topk=topk), expected["mrr"], "mrr")
    close(M.mean_average_precision(outputs, targets, topk=topk), expected["map"], "map")
    close(M.ndcg(outputs, targets, topk=topk), expected["ndcg"], "ndcg")
    linear = M.ndcg(outputs, targets, topk=topk, gain_function="linear_rank")
    close(linear, expected["ndcg_linear"], "ndcg linear")
    close(M.reciprocal_rank(outputs, targets, 3), expected["reciprocal_rank"], "rr")
    close(M.average_precision(outputs, targets, 4), expected["average_precision"], "ap")
    close(M.dcg(outputs, targets), expected["dcg"], "dcg")


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (M.HitrateMetric, {"topk": [1, 3]}),
        (M.MRRMetric, {"topk": [1, 3], "prefix": "p_"}),
        (M.MAPMetric, {"topk": [2, 5], "suffix": "_s"}),
        (M.NDCGMetric, {"topk": [1, 3, 8]}),
    ],
)
def test_recsys_metric_objects(cls, kwargs):
    metric = cls(**kwargs)
    metric.reset()
    batches = [metric.update_key_value(o, t) for o, t in _split(recsys(), [5, 3, 4])]
    close(batches, RECSYS["objects"][cls.__name__]["batches"])
    close(metric.compute_key_value(), RECSYS["objects"][cls.__name__]["loader"])


def test_recsys_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="Inconsistent numbers of samples"):
        M.hitrate(torch.zeros(3, 4), torch.zeros(3, 5), topk=[1])
    with pytest.raises(ValueError, match="gain_function"):
        M.ndcg(torch.zeros(3, 4), torch.zeros(3, 4), topk=[1], gain_function="log")


def test_cmc():
    embeddings, labels, is_query = cmc()
    metric = M.CMCMetric("e", "l", "q", topk=[1, 3, 5], prefix="v_")
    metric.reset(3, 20)
    for e, y, q in _split(cmc(), [7, 6, 7]):
        metric.update(e=e, l=y, q=q)
    close(metric.compute_key_value(), CMC["metric"])
    query = is_query == 1
    conformity = labels[~query] == labels[query].reshape(-1, 1)
    scores = [M.cmc_score(embeddings[query], embeddings[~query], conformity, k) for k in (1, 2, 4)]
    close(scores, CMC["functional"])

    cids = torch.arange(20) % 2
    metric = M.ReidCMCMetric("e", "p", "c", "q", topk=[1, 2])
    metric.reset(3, None)  # num_samples unknown: batches are concatenated
    for e, p, c, q in _split((embeddings, labels, cids, is_query), [7, 6, 7]):
        metric.update(e=e, p=p, c=c, q=q)
    close(metric.compute_key_value(), CMC["reid"])
    with pytest.raises(KeyError, match="missing"):
        metric.update(e=embeddings)


def test_confusion_matrix():
    scores, targets = confusion()
    metric = M.ConfusionMatrixMetric(num_classes=4)
    metric.reset()
    for s, y in _split((scores, targets), [10, 15]):
        metric.update(s, y)
    close(metric.compute(), CONFUSION["scores"])
    assert metric.compute().dtype.name == "int32"
    metric = M.ConfusionMatrixMetric(num_classes=4, normalize=True)
    for s, y in _split((scores, targets), [10, 15]):
        metric.update(s.argmax(1), torch.nn.functional.one_hot(y, 4))
    close(metric.compute(), CONFUSION["normalized"])  # the absent class: a row of zeros
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        metric.update(torch.tensor([4]), torch.tensor([0]))
    with pytest.raises(ValueError, match="one 1 per row"):
        metric.update(torch.tensor([0]), torch.tensor([[1, 1, 0, 0]]))
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0]))


def test_names_are_exported():
    for name in ("iou", "dice", "trevsky", "get_segmentation_statistics", "r2_squared"):
        assert getattr(M.functional, name) is getattr(M, name)
