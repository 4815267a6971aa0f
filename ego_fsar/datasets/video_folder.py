"""Your own videos as datasets: a `root/<class name>/<video>` folder tree, or a plain list of videos.

A video is a video file (VIDEO_EXTENSIONS, any case) or a frame folder (a folder directly holding image
files, read with DATA.FRAME_TEMPLATE); one tree or list may mix both kinds (`open_any`).

`VideoFolder` (DATA.PATH_PREFIX = root): the classes are root's sub-folders, sorted by name (label i =
`class_names[i]`), and the videos of a class are every video under its folder, at any depth:

    my_clips/fencing/a.mp4             class "fencing"
    my_clips/fencing/outdoor/b.webm    class "fencing"
    my_clips/juggling/c/               class "juggling", a frame folder (c/frame_0000000001.jpg, ...)

An optional split file `DATA.PATH_TO_DATA_DIR/<split>.txt` names the split's videos, one
`<class>/<video>` per line as `names` spells them (`fencing/outdoor/b.webm`, `juggling/c`); without it
every video is in every split (few-shot test on the whole tree). The whole video is the clip.

`VideoFiles`: given videos as unlabelled clips (label -1), e.g. for feature extraction or the queries of
a demo; `videos_from_arg` turns a command-line argument (folder, .txt list or one video) into its paths.
"""
import logging
import os
from typing import List, Sequence, Union

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .decoder import DECODER_REGISTRY, DecordReader, FrameFolderReader, PyAVReader
from .utils import AnnotationError, DecodeError
from .video_list import VideoListDataset, read_list_lines

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _has_extension(name: str, extensions: Sequence[str]) -> bool:
    return os.path.splitext(name)[1].lower() in extensions


def is_frame_folder(path: str) -> bool:
    """Whether `path` is a folder directly holding image files."""
    return os.path.isdir(path) and any(_has_extension(name, IMAGE_EXTENSIONS) and
                                       os.path.isfile(os.path.join(path, name)) for name in os.listdir(path))


def find_videos(root: str) -> List[str]:
    """Sorted paths, relative to `root`, of the video files and frame folders under `root` (recursively;
    hidden files and folders are ignored, frame folders are not searched further)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"video folder {root} does not exist")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        rel = os.path.relpath(folder, root)
        if rel != "." and any(_has_extension(f, IMAGE_EXTENSIONS) for f in files):
            found.append(rel)
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.normpath(os.path.join(rel, f)) for f in files
                  if not f.startswith(".") and _has_extension(f, VIDEO_EXTENSIONS)]
    return sorted(found)


def open_any(path: str, cfg: CfgNode) -> Union[FrameFolderReader, DecordReader, PyAVReader]:
    """A reader (decoder.py) of `path`: the "frames" reader for a folder, else DATA.DECODING_BACKEND's
    (PyAV when that is "frames"). DecodeError when the video cannot be opened or has no frames."""
    if os.path.isdir(path):
        reader = DECODER_REGISTRY.get("frames")(path, cfg)
        if not os.path.isfile(reader.frame_path(0)):
            raise DecodeError(path, f"no first frame {cfg.DATA.FRAME_TEMPLATE.format(1)}: frame folders are "
                                    f"read with DATA.FRAME_TEMPLATE {cfg.DATA.FRAME_TEMPLATE!r}")
    else:
        backend = cfg.DATA.DECODING_BACKEND
        reader = DECODER_REGISTRY.get("pyav" if backend == "frames" else backend)(path, cfg)
    if reader.num_frames < 1:
        raise DecodeError(path, "the video has no frames")
    return reader


class _AnyVideoDataset(VideoListDataset):
    """VideoListDataset whose videos are read by `open_any`: `videos` are the paths as they are."""

    def video_path(self, clip: int) -> str:
        return self.videos[clip]

    def _open(self, clip: int):
        return open_any(self.videos[clip], self.cfg)


def list_classes(root: str) -> List[str]:
    """Sorted names of root's class folders; errors name a video that is not in a class folder."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"DATA.PATH_PREFIX {root!r} is not a folder (expected root/<class>/<video>)")
    classes, strays = [], []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith("."):
            continue
        if is_frame_folder(path):
            strays.append(path + os.sep)
        elif os.path.isdir(path):
            classes.append(name)
        elif _has_extension(name, VIDEO_EXTENSIONS):
            strays.append(path)
    if strays:
        raise ValueError(f"videos directly in DATA.PATH_PREFIX {root} are in no class: {', '.join(strays)}; "
                         f"move each into {root}/<class name>/")
    if not classes:
        raise ValueError(f"DATA.PATH_PREFIX {root} has no class folders (expected {root}/<class name>/<video>)")
    return classes


def read_folder_split(path: str, names: Sequence[str]) -> List[int]:
    """Positions in `names` of the videos listed in split file `path` (one `<class>/<video>` per line)."""
    position = {name: i for i, name in enumerate(names)}
    chosen = []
    for n, line in read_list_lines(path):
        name = os.path.normpath(line)
        if name not in position:
            raise AnnotationError(f"{path}, line {n}: no video {line!r} in DATA.PATH_PREFIX (expected "
                                  f"`<class>/<video>` naming a video file or frame folder of the tree)")
        chosen.append(position[name])
    return sorted(set(chosen))


@DATASET_REGISTRY.register()
class VideoFolder(_AnyVideoDataset):
    """The videos of `DATA.PATH_PREFIX/<class>/`, restricted by `DATA.PATH_TO_DATA_DIR/<split>.txt` when
    that file exists; label = position of the class folder in the sorted class names."""

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        root = cfg.DATA.PATH_PREFIX
        self.class_names = list_classes(root)
        names, labels = [], []
        for label, name in enumerate(self.class_names):
            videos = find_videos(os.path.join(root, name))
            if not videos:
                raise ValueError(f"class folder {os.path.join(root, name)} holds no videos (files ending in "
                                 f"{', '.join(VIDEO_EXTENSIONS)} or folders of frames)")
            names += [os.path.join(name, video) for video in videos]
            labels += [label] * len(videos)
        split_file = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, f"{split}.txt") if cfg.DATA.PATH_TO_DATA_DIR else ""
        restricted = os.path.isfile(split_file)
        keep = read_folder_split(split_file, names) if restricted else range(len(names))
        self.names = [names[i] for i in keep]
        self.labels = [labels[i] for i in keep]
        self.videos = [os.path.abspath(os.path.join(root, name)) for name in self.names]
        logger.info("VideoFolder %s, split %r: %d videos of %d classes%s", root, split, len(self.names),
                    len(set(self.labels)), f" (split file {split_file})" if restricted else "")


class VideoFiles(_AnyVideoDataset):
    """Given video files / frame folders as unlabelled clips (labels -1, no class names); split defaults
    to TEST.SPLIT (the deterministic test views)."""

    def __init__(self, cfg: CfgNode, paths: Sequence[str], split: str = ""):
        super().__init__(cfg, split or cfg.TEST.SPLIT)
        if not paths:
            raise ValueError("VideoFiles needs at least one video")
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"no such video file or frame folder: {', '.join(missing)}")
        self.names = list(paths)
        self.videos = list(paths)
        self.labels = [-1] * len(self.names)
        self.class_names = []


def _read_video_list(path: str) -> List[str]:
    """Paths on the lines of list file `path` (relative ones are relative to its folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    videos = []
    for n, line in read_list_lines(path):
        video = os.path.join(folder, line)
        if not os.path.exists(video):
            raise FileNotFoundError(f"{path}, line {n}: no such video file or frame folder {video}")
        videos.append(video)
    return videos


def videos_from_arg(arg: str) -> List[str]:
    """Videos named by a command-line argument: every video under a folder (absolute paths), the lines
    of a .txt list file (relative to its folder), or the one video file / frame folder `arg`."""
    if is_frame_folder(arg):
        return [arg]
    if os.path.isdir(arg):
        videos = [os.path.join(os.path.abspath(arg), v) for v in find_videos(arg)]
        if not videos:
            raise FileNotFoundError(f"{arg} holds no videos (files ending in {', '.join(VIDEO_EXTENSIONS)} or "
                                    f"folders of frames)")
        return videos
    if not os.path.isfile(arg):
        raise FileNotFoundError(f"no such video, frame folder, folder or .txt list: {arg}")
    return _read_video_list(arg) if arg.lower().endswith(".txt") else [arg]
