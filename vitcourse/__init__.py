"""vitcourse: the library behind the Vision Transformer course (training, analysis, plots, CLI).

The model code itself lives in two flat folders, imported as `import transformer` / `import ViT`:
`solutions/` (the hidden reference) and `student_src/` (the generated stubs). `vitcourse.impl` loads
either one, or a student's folder, under its own names so that several can live in one process.
"""
__version__ = "0.1.0"
