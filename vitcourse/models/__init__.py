"""Models beside the student's ViT: ResNet-18, the course's CNNs, pretrained backbones (timm, torchvision)."""
