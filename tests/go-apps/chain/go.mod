module gosight.dev/testapps/chain

go 1.22
