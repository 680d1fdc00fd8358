module gorod/bench

go 1.19
