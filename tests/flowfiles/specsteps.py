"""Step functions that the flow files in this folder name with ``call``.

The loader finds this module because it puts a flow file's folder at the
front of ``sys.path``.  Parameter names matter: a parameter named like a
step receives its output, any other one is a flow input.
"""


def words(text):
    return text.split()


def top(words, limit):
    return words[:limit]


def square(x):
    return x * x


def squares(x):
    return [v * v for v in x]


def collect(**outputs):
    return dict(sorted(outputs.items()))


async def shout(text):
    return text.upper()


NOT_A_FUNCTION = 42
