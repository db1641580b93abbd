"""vitcourse: the library behind the Vision Transformer course.

Subpackages, by concern:
    vitcourse.course    notebook build, release, grading lifecycle (nbgrader plugins), Colab setup, stubs, checks
    vitcourse.training  the training loop, recipes, runtime (device, precision, fast mode), transfer learning
    vitcourse.models    ResNet-18, the CNN family, pretrained backbones (timm / torchvision)
    vitcourse.analysis  complexity, sweep, ablation statistics, timing, plots, quiz, interpretability, profiling
    coursetools.commands  one module per `vitcourse` subcommand (coursetools/cli.py finds them)

The model code itself lives in two flat folders, imported as `import transformer` / `import ViT`:
`solutions/` (the hidden reference) and `student_src/` (the generated stubs). `coursecore.impl` loads
either one, or a student's folder, under its own names so that several can live in one process.
"""
__version__ = "0.1.0"
