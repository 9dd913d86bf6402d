import math


class Circle:
    def __init__(self, r: float) -> None:
        self.r = r

    def area(self) -> float:
        return math.pi * self.r ** 2


def total_area(circles):
    return sum(c.area() for c in circles)
