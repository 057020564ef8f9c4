module gosight.dev/offsets-tracker/std

go 1.22
