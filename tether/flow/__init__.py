"""Flow policies: flow-matching BC, FQL, QAM and TRQAM (issue 5). Import the algorithm modules explicitly."""
