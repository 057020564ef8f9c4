module gosight.dev/testapps/hijackserver

go 1.22
