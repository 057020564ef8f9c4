module gosight.test/header_walk

go 1.22
