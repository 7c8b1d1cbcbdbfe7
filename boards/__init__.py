"""ommatidia.boards"""
