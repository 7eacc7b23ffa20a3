"""A tiny synthetic Chinese keyword data set for model tests (built here: nothing is downloaded)."""
import random

LABELS = ["预售", "谍照", "新车上市", "申报图"]
PHRASES = {
    "预售": ["开启预售", "预售价格公布", "盲订通道开启"],
    "谍照": ["路试谍照曝光", "伪装测试车谍照"],
    "新车上市": ["正式上市销售", "上市发布会召开"],
    "申报图": ["工信部申报图", "申报信息曝光"],
}
NOISE = ["比亚迪", "吉利", "长安", "小米", "理想", "车身", "轴距", "动力", "内饰", "续航", "电池", "座椅",
         "外观", "前脸", "尾灯", "轮毂", "毫米", "千瓦", "售后", "保养", "油耗", "空间", "智能", "驾驶"]


def make_data(n, seed):
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        tags = [t for t in LABELS if rng.random() < 0.3]
        words = [rng.choice(NOISE) for _ in range(rng.randint(4, 14))]
        for t in tags:
            words.insert(rng.randint(0, len(words)), rng.choice(PHRASES[t]))
        texts.append("".join(words) + rng.choice(["。", "！", ""]))
        labels.append(tags)
    return texts, labels


TRAIN = make_data(480, 1)
DEV = make_data(160, 2)
QUIET = lambda *a, **k: None  # noqa: E731
