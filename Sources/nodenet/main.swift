print("nodenet")
