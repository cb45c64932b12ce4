module writecost

go 1.19
