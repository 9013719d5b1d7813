module behavry.test/peers

go 1.19
