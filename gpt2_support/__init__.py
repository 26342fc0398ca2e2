"""The hand-written code around the lessons: fetching and reading GPT-2's published weights, file helpers,
the command line (`gpt2`), and the one table of weight names. The lessons' own code is the package
generated from the notebooks, `gpt2_from_scratch`."""
