"""Experiments: planning runs from one config (plan), running them with any runner (runner), aggregating
repeats (repeats), comparing them (report) and the study report (study). Arrows: plan <- report <- repeats
<- study <- runner; training/ holds the engine and a single run, and imports none of this."""
