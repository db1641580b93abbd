"""Running the course: notebook build, release, grading lifecycle, Colab setup, stubs, checks."""
