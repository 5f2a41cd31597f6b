print("southbridge")
