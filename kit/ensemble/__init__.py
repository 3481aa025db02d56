"""kit.ensemble: combining prediction files. rules (report 001's max/correct/boost/weighted, plus soft with
weights fitted on OOF) and the file-level runner `kit ensemble` calls; ENSEMBLES is the registry."""
