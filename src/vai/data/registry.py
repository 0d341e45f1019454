"""The table of data sets vai knows by name: files, public sources and checksums.

This is the only place where data set names, URLs and sha256 values live, so that the
resolver, ``verify`` and ``fetch`` cannot disagree about what a data set is. The checksums are
written here (not read from a manifest at run time) so that a user with nothing but the
installed package can still tell a good download from a bad one.

Facts below come from ``shared/data/README.md`` and ``shared/data/MANIFEST.sha256`` of the
project workspace, and from the upstream repositories named in each section.
"""

from __future__ import annotations

from dataclasses import dataclass

from vai.errors import UserError

# How a file is produced from what its upstream URL serves. ``None`` means the download is
# the file itself; this value means the URL serves DMControl-GB's torch pickle of colour
# settings, which ``vai.data.convert`` turns into the JSON whose checksum is listed.
CONVERT_DMCGB_COLORS = "dmcgb-colors-pt"


@dataclass(frozen=True)
class DataFile:
    """One file of a data set, as it must look on disk once fetched."""

    path: str
    """Path relative to the data directory with ``/`` separators, e.g. ``video_easy/video0.mp4``."""
    sha256: str
    """Hex sha256 of the file on disk (after any conversion), the test of a good copy."""
    url: str
    """Public upstream location of the file (or of what ``convert`` turns into it)."""
    convert: str | None = None
    """How to turn the upstream download into the file; ``None`` when it is the file itself."""


@dataclass(frozen=True)
class Dataset:
    """A named group of files that one evaluation mode or training step needs."""

    name: str
    folder: str
    """Sub-folder of the data directory that holds the files."""
    description: str
    source: str
    """Where the data comes from, in words (for ``vai data list`` and error messages)."""
    files: tuple[DataFile, ...] = ()
    """Every file with its checksum; empty for a local-only data set."""

    @property
    def local_only(self) -> bool:
        """True for data with no public download that the user must provide."""
        return not self.files


# DMControl Generalization Benchmark (Hansen & Wang, 2021). Its default branch is ``main``:
# READMEs of projects built on it link
#   https://github.com/nicklashansen/dmcontrol-generalization-benchmark/tree/main
# and its data sits under ``src/env/data/`` (``src/env/wrappers.py`` loads it from there).
_DMCGB_DATA = "https://raw.githubusercontent.com/nicklashansen/dmcontrol-generalization-benchmark/main/src/env/data"

# VAI (Wang, Lian & Yu, CVPR 2021). Its default branch is ``main``: the repository's own README
# embeds https://raw.githubusercontent.com/TonyLianLong/VAI-ReinforcementLearning/main/introduction.png
_VAI_TEXTURES = (
    "https://raw.githubusercontent.com/TonyLianLong/VAI-ReinforcementLearning/main"
    "/src/env/drawerworld/metaworld/envs/assets_v1/textures"
)

# video_easy: upstream has video0..video9, but 3, 4, 5 and 7 are not in the project's data and
# have no checksum here, so they are left out rather than fetched unchecked.
_VIDEO_EASY_SHA256 = (
    (0, "7cd810b22c9cea030b94a82e392cd5e7f301b084a2ccfe141a180c39d1ae3deb"),
    (1, "fc348d4f0edb587bf1357a06e6b1fa53599f0e12f2d537f49716b00986edde46"),
    (2, "10a9cbfbc9cad7b8f4750ebf9a3cf1b97c3006730b85a949995ab49eff48fab0"),
    (6, "64e9a29ebe6082c60af013ebdd6c3e9a390c9935b2c9a56650bdc685e881aefb"),
    (8, "240c950b82075254a5668f567c66358faac9c62d1bd4772adbd3596066237d0b"),
    (9, "c13470e0adca7b34b6961f8202bc0c7d0f1715f55dabfda448546143122cde11"),
)

# video_hard: only clips 30..59, the development split. Upstream also has clips 0..29 (the
# source of the ``backgrounds`` stand-in) and 60..99; 60..99 are held out for final results and
# must never be listed or fetched here, so that nothing is tuned on them.
_VIDEO_HARD_SHA256 = (
    (30, "b42bb98af04a335a17e754515e958699909f52a674e323b7fbf6ab490b073a8a"),
    (31, "1549b8ed6753c9a39653174e66e775e822de8fbe2de1298a170acc642dac92f4"),
    (32, "616d1a6355bda3917abe9841a0d4d239e8cb163828ae4e1001a7ba73a6060c46"),
    (33, "1acccf41fc40bd548172e402696013e477a550e4ceaabe2a9e42a05e9605cb6d"),
    (34, "689da46b4af1e59a28232596b491d07066dc179aacdfe8ca72aacabe1194d738"),
    (35, "5f0afc91ac55bde6028e8b52848efcb078b5dd23cccf35730e313cc9b78a944d"),
    (36, "b5f2568263d2c23e5c02317af09d3c04cd67006eca88839777ff447f9f3e8ef2"),
    (37, "097c3626110a374259bd644ccd3b5a9ce157cfb868f5cdad9be85423a4a19a0c"),
    (38, "c33291fadbb3f056967df3c6b3b90d5612b938cd62d4f801243e3dab55e87b81"),
    (39, "e41bf4e017d5f7abf23b61bb7ddf523000b6a542d7a8c5bab1d9b48670db3e94"),
    (40, "6358f4e23eee458dc76f0fc8b1bdc7e13f1c73106acc4edc0815cdcd01d60a16"),
    (41, "c92f370f6f4dd8c8124d36ca2572379d46f768bfb1673c161b3c4fe1796ef2fe"),
    (42, "c0d38eeb01242a99d548ddeaa3818e40fbf6bddabea00245cc97c8a3fe906fd4"),
    (43, "438c26838c525f47b50bffd97db7c5f0ebec58388058fcb23a764d4968f870a2"),
    (44, "c06a0a45f569bcec78ca3937f96fb2b020d07e09b4476709508174035de284c0"),
    (45, "ba1b2ade3becf938d9f3df8d58dc54c62c243d7de88e3c060ab889baf8c65508"),
    (46, "9bf35ffe800b8a91469bdbc32b508080258daa5abdb7c190d98feee57b3327a2"),
    (47, "74cb243fb03739a28a809e08e4f7c1caf58b25169bf5a318c0ceba702808c65b"),
    (48, "d5ac59bfc71ad92807d2f5a5f7be3a77ff4d08fac8077f97111be0230f5404bc"),
    (49, "367f67adb75e0a899cea1b79928215779f12da535c01a58e0101644d9cb8f36c"),
    (50, "e5151de29389f5e49b9a788e660aa2839e4f99b39f92b448857effb105cc06d9"),
    (51, "caf4403f1116a03269721d7e45b444fd36c56da9fef59c7181a3252ad03af62a"),
    (52, "fe887aa170401bfd36d7fcf9ea1d1bcabda538ba44eef9198150bd15f09f3644"),
    (53, "90afb401a0176e12ccdb9639c0d891176571a87d656eedf70c49364ff10ecc93"),
    (54, "b7617fd1dc53fb2081eda1af9722dc824992276ba8688e429eedbeb208731219"),
    (55, "b652fffc85117c4fa086026a120fe37dab09fc51c2c8f70f16cfda7fb3b2256c"),
    (56, "863a1988063ebc2e70a0a64deb730a3a395f59cf13f472721a8e4f7407456dc6"),
    (57, "e41ddc42051d003c17a8fdc0378be99aa85f8b2433dc79dad5bc5c07ffeefd02"),
    (58, "28f44a30c84efc6f1b62e2fe0c04e1399adda30ee89cf4820caf6470bdd70fd4"),
    (59, "6185ebbb6dae09bb8dffeeda0be9772045096ffbdd2adc55dff309134756186f"),
)


def _videos(folder: str, table: tuple[tuple[int, str], ...]) -> tuple[DataFile, ...]:
    """DMControl-GB video files ``<folder>/video<i>.mp4``, served as-is upstream."""
    return tuple(
        DataFile(f"{folder}/video{i}.mp4", sha256, f"{_DMCGB_DATA}/{folder}/video{i}.mp4") for i, sha256 in table
    )


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="colors",
        folder="colors",
        description="colour settings for the color_easy / color_hard modes (100 each)",
        source="DMControl-GB src/env/data/color_{easy,hard}.pt, converted to JSON",
        files=(
            # Upstream ships torch pickles; the checksum is that of our JSON conversion.
            DataFile(
                "colors/color_easy.json",
                "e638faf6992ef4d3985f710e4792896ec395067da7b42d35630bc27c5e8496b5",
                f"{_DMCGB_DATA}/color_easy.pt",
                CONVERT_DMCGB_COLORS,
            ),
            DataFile(
                "colors/color_hard.json",
                "c9d53a952352b3707a372fde2f18d222706f6d674e4a6624314618178c4317cf",
                f"{_DMCGB_DATA}/color_hard.pt",
                CONVERT_DMCGB_COLORS,
            ),
        ),
    ),
    Dataset(
        name="video_easy",
        folder="video_easy",
        description="skybox videos for the video_easy mode (6 of upstream's 10)",
        source="DMControl-GB src/env/data/video_easy/ (first used by PAD)",
        files=_videos("video_easy", _VIDEO_EASY_SHA256),
    ),
    Dataset(
        name="video_hard",
        folder="video_hard",
        description="background clips 30-59 for the video_hard mode (development split)",
        source="DMControl-GB src/env/data/video_hard/ (RealEstate10K clips)",
        files=_videos("video_hard", _VIDEO_HARD_SHA256),
    ),
    Dataset(
        name="drawerworld",
        folder="drawerworld",
        description="DrawerWorld test table textures (blanket, fabric)",
        source="VAI src/env/drawerworld/metaworld/envs/assets_v1/textures/",
        files=(
            DataFile(
                "drawerworld/blanket.png",
                "68298282f471027296c875273fed4a76f04be6955ab48ccf75172ec0a088576d",
                f"{_VAI_TEXTURES}/blanket.png",
            ),
            DataFile(
                "drawerworld/fabric.png",
                "61e21065b078010f3ffdf91dd242ee5319012ac7dfd919bfd2e0b8d196b4d967",
                f"{_VAI_TEXTURES}/fabric.png",
            ),
        ),
    ),
    # Augmentation pools for the attention adapter: no checksummed public download, so local only.
    # Headline results use places365 or photos, which have nothing to do with the test footage.
    Dataset(
        name="places365",
        folder="places365",
        description="Places365-standard images, VAI's augmentation pool (local only)",
        source=(
            "download places365standard_easyformat.tar from the Places365 site (places2.csail.mit.edu) "
            "and extract its train/ folder here"
        ),
    ),
    Dataset(
        name="photos",
        folder="photos",
        description="wallpaper photographs unrelated to any test video, an augmentation pool (local only)",
        source=(
            "wallpapers of the Debian packages mate-backgrounds, gnome-backgrounds, ukui-wallpapers and "
            "lomiri-wallpapers, resized to 512 px on the short side"
        ),
    ),
    # The workspace's 300 jpgs are frames of video_hard clips 0-29: other clips than the test ones,
    # but the same footage, so adapters trained on them look better on video_hard than they are.
    Dataset(
        name="backgrounds",
        folder="backgrounds",
        description="stand-in pool cut from video_hard clips 0-29 (optimistic on video_hard; local only)",
        source="still frames of DMControl-GB's video_hard clips 0-29, which are not test clips",
    ),
)

AUGMENTATION_POOLS = ("places365", "photos")
"""Image folders of the data directory that the adapter's augmentation uses by default, in order of
preference; the ``backgrounds`` stand-in is never a default (see its row)."""


def dataset_names() -> tuple[str, ...]:
    """Names of all registered data sets, in table order."""
    return tuple(d.name for d in DATASETS)


def get_dataset(name: str) -> Dataset:
    """The data set called ``name``; a UserError naming the valid names otherwise."""
    for dataset in DATASETS:
        if dataset.name == name:
            return dataset
    raise UserError(f"unknown data set {name!r}: choose from {', '.join(dataset_names())}")
