"""The datasets xpnet knows: their four files, published MD5s, mirrors and system copies."""

from dataclasses import dataclass, field

PARTS = ("train_img", "train_label", "test_img", "test_label")
FILENAMES = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}


class DatasetError(RuntimeError):
    """A dataset file is missing, damaged, or could not be downloaded."""


@dataclass
class DatasetSpec:
    name: str
    mirrors: list
    mirror_env: str  # the variable (and setting, lower-cased less XPNET_) naming a mirror
    md5: dict
    system_dirs: list = field(default_factory=list)
    install_hint: str = ""


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        mirror_env="XPNET_MNIST_MIRROR",
        md5={"train_img": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train_label": "d53e105ee54ea40749a09fcbcd1e9432",
             "test_img": "9fb629c4189551a2d022fa330f9573f3",
             "test_label": "ec29112dd5afa0611ce80d1b7f02629c"},
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        mirror_env="XPNET_FASHION_MNIST_MIRROR",
        md5={"train_img": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train_label": "25c81989df183df01b3e8a0aad5dffbe",
             "test_img": "bef4ecab320f06d8554ea6380940ec79",
             "test_label": "bb300cfdad3c16e7a12a480ee83cd310"},
        system_dirs=["/usr/share/datasets/fashion-mnist"],
        install_hint="apt-get install dataset-fashion-mnist",
    ),
}
