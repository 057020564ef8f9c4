module gosight.dev/testapps/rawclient

go 1.22
