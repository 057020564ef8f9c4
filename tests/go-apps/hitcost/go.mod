module example.com/hitcost

go 1.22
