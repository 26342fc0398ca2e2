"""The series' diagrams: `python -m figures.make_figures` draws every `figures/*.png` a notebook shows.

`drawing` is the kit (canvas, boxes, arrows, matrices, `save`); one module per notebook draws its figures,
named as the generated package names the notebook's code: `architecture` (01), `pretraining` (02),
`weights` (03), `classify` (04), `instruct` (05).
"""
