module gosight.dev/testapps/sockcheck

go 1.22
