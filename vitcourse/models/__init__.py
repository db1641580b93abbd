"""Models beyond the student's ViT: pretrained backbones (timm, torchvision) and the course's CNNs."""
