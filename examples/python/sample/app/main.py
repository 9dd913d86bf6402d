import json

from greeting import greet

from app import util


class Greeter:
    def __init__(self, name):
        self.name = name

    def run(self):
        return json.dumps({"greeting": greet(util.title(self.name))})


def main():
    print(Greeter("world").run())
