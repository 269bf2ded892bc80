"""The torchvision and timm models depthscope cuts without being told: which classes are blocks.

Each entry names the model classes it recognises and the classes of their residual blocks; the
stages holding the blocks are opened, and modules between blocks (downsampling, transitions,
patch merging) become steps of their own (`stage_blocks`). Everything before the first block is
the stem (a ResNet's conv1/bn1/relu/maxpool, a ViT's patch embedding, class token and position
embedding), everything after the last the head (pooling, flatten, classifier): `hooked_steps`
runs the model itself there, so the functional glue in each library's ``forward`` is reproduced
exactly.
"""

from __future__ import annotations

from depthscope.chain._adapters import LibraryAdapter

TV = "torchvision.models."
TIMM = "timm.models."
TIMM_EFFICIENTNET_BLOCKS = "timm.models._efficientnet_blocks:"

LIBRARY_ADAPTERS: tuple[LibraryAdapter, ...] = (
    # torchvision
    LibraryAdapter("torchvision.resnet", (f"{TV}resnet:ResNet",), (f"{TV}resnet:BasicBlock", f"{TV}resnet:Bottleneck")),
    LibraryAdapter(
        "torchvision.mobilenet",
        (f"{TV}mobilenetv2:MobileNetV2", f"{TV}mobilenetv3:MobileNetV3"),
        (f"{TV}mobilenetv2:InvertedResidual", f"{TV}mobilenetv3:InvertedResidual"),
    ),
    LibraryAdapter(
        "torchvision.efficientnet",
        (f"{TV}efficientnet:EfficientNet",),
        (f"{TV}efficientnet:MBConv", f"{TV}efficientnet:FusedMBConv"),
    ),
    LibraryAdapter("torchvision.convnext", (f"{TV}convnext:ConvNeXt",), (f"{TV}convnext:CNBlock",)),
    LibraryAdapter(
        "torchvision.swin",
        (f"{TV}swin_transformer:SwinTransformer",),
        (f"{TV}swin_transformer:SwinTransformerBlock", f"{TV}swin_transformer:SwinTransformerBlockV2"),
    ),
    LibraryAdapter(
        "torchvision.densenet", (f"{TV}densenet:DenseNet",), (f"{TV}densenet:_DenseBlock", f"{TV}densenet:_Transition")
    ),
    # RegNet's stages (trunk_output.block1..4) hold ResBottleneckBlocks; no module sits between them.
    LibraryAdapter("torchvision.regnet", (f"{TV}regnet:RegNet",), (f"{TV}regnet:ResBottleneckBlock",)),
    LibraryAdapter(
        "torchvision.vit", (f"{TV}vision_transformer:VisionTransformer",), (f"{TV}vision_transformer:EncoderBlock",)
    ),
    # timm
    LibraryAdapter("timm.resnet", (f"{TIMM}resnet:ResNet",), (f"{TIMM}resnet:BasicBlock", f"{TIMM}resnet:Bottleneck")),
    LibraryAdapter(
        "timm.vit",
        (f"{TIMM}vision_transformer:VisionTransformer",),
        (
            f"{TIMM}vision_transformer:Block",
            f"{TIMM}vision_transformer:ResPostBlock",
            f"{TIMM}vision_transformer:ParallelScalingBlock",
            f"{TIMM}vision_transformer:ParallelThingsBlock",
        ),
    ),
    LibraryAdapter(
        "timm.mixer",
        (f"{TIMM}mlp_mixer:MlpMixer",),
        (f"{TIMM}mlp_mixer:MixerBlock", f"{TIMM}mlp_mixer:ResBlock", f"{TIMM}mlp_mixer:SpatialGatingBlock"),
    ),
    LibraryAdapter("timm.convnext", (f"{TIMM}convnext:ConvNeXt",), (f"{TIMM}convnext:ConvNeXtBlock",)),
    LibraryAdapter(
        "timm.efficientnet",
        (f"{TIMM}efficientnet:EfficientNet",),
        tuple(
            TIMM_EFFICIENTNET_BLOCKS + c
            for c in ("DepthwiseSeparableConv", "InvertedResidual", "EdgeResidual", "CondConvResidual", "ConvBnAct")
        ),
    ),
    # Each stage of layers.* starts with its PatchMerging (an nn.Identity in stage 0, skipped), a step
    # of its own between the last block of one stage and the first of the next, as in torchvision.
    LibraryAdapter(
        "timm.swin",
        (f"{TIMM}swin_transformer:SwinTransformer",),
        (f"{TIMM}swin_transformer:SwinTransformerBlock",),
    ),
    # A dense block calls its layers with the list of all earlier feature maps: each block is one
    # step (the concatenation is inside it), each transition another, as in torchvision.
    LibraryAdapter(
        "timm.densenet",
        (f"{TIMM}densenet:DenseNet",),
        (f"{TIMM}densenet:DenseBlock", f"{TIMM}densenet:DenseTransition"),
    ),
    # RegNet's blocks are the Bottlenecks of its stages s1..s4 (a glob "s*.b*" also caught stem.bn).
    LibraryAdapter(
        "timm.regnet", (f"{TIMM}regnet:RegNet",), (f"{TIMM}regnet:Bottleneck", f"{TIMM}regnet:PreBottleneck")
    ),
)
