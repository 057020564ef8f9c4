module gosight.dev/testapps/nohttp

go 1.22
